"""``fareway catalog refresh``: regenerate ``providers/catalog_genai.toml`` from the installed
genai-prices (``fareway.ledger.genai_catalog``), or, with ``--check``, say whether it is current."""

from __future__ import annotations

from pathlib import Path

import click

from fareway.cli_config import UserError


def register(main: click.Group) -> None:
    @main.group("catalog")
    def catalog_group() -> None:
        """The model catalog's generated rows (from genai-prices)."""

    @catalog_group.command("refresh")
    @click.option(
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write here instead of the package's catalog_genai.toml.",
    )
    @click.option("--check", is_flag=True, help="Write nothing; exit 1 when the file is not current.")
    def refresh_cmd(output: Path | None, check: bool) -> None:
        """Regenerate the catalog rows of every current model genai-prices prices for the
        built-in providers (rules: fareway/ledger/genai_catalog.py)."""
        from fareway.ledger import genai_catalog as gc

        target = output or gc.builtin_path()
        rows = gc.build_rows()
        text = gc.render(rows, gc.genai_version())
        try:
            old = target.read_text("utf-8") if target.exists() else None
        except OSError as exc:
            raise UserError(f"cannot read {target}: {exc.strerror}") from None
        where = f"{target} ({len(rows)} rows from genai-prices {gc.genai_version()})"
        if check:
            if old != text:
                click.echo(f"not current: {where}; run `fareway catalog refresh`", err=True)
                raise SystemExit(1)
            click.echo(f"current: {where}")
            return
        if old == text:
            click.echo(f"unchanged: {where}")
            return
        try:
            target.write_text(text, "utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {target}: {exc.strerror}") from None
        click.echo(f"wrote {where}")
