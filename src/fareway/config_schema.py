"""What a config file may say: the registry of sections and their keys, and typed readers.

Every key of a config file is checked against :data:`SECTIONS` before any section is parsed, so
a misspelt key (``prot = 8080``, ``[sever]``, ``api_kee``) fails start-up naming the file, the
key and the nearest known one (``did you mean "port"?``), whichever section it is in.

A feature that adds a section joins with one line::

    SECTIONS["experiments"] = Section(entry_keys={"variants", "split", "metric"})

``keys`` is the key set of a plain table (``[server]``); ``entry_keys`` that of each named
sub-table (``[providers.NAME]``); ``None`` for either means the section's own parser checks it
(it must raise :class:`ConfigError` naming the key).  The typed readers (:func:`get_int` ...)
turn a wrong type (``port = "abc"``) into a ConfigError naming the section and key.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fareway.errors import FarewayError


class ConfigError(FarewayError):
    status = 500
    type = "config_error"


@dataclass(frozen=True, slots=True)
class Section:
    keys: Collection[str] | None = None
    """The keys of the table itself (None: checked by the section's parser)."""
    entry_keys: Collection[str] | None = None
    """With ``named``: the keys of each ``[section.NAME]`` table (None: checked by its parser)."""
    named: bool = False
    """The section is a table of named tables (``[providers.openai]``, ``[aliases.fast]``)."""
    scalar_entries: bool = False
    """With ``named``: an entry may also be a plain value (``[aliases] fast = "groq/llama"``)."""


SECTIONS: dict[str, Section] = {}
"""Top-level section name -> what it may hold (filled below; features add their own line)."""

TOP_LEVEL_SCALARS: dict[str, type] = {"master_key": str}
"""Top-level keys that are values, not tables."""


def suggest(word: str, known: Collection[str]) -> str:
    """``; did you mean "port"?`` for the closest known key, or nothing."""
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def unknown_key(where: str, key: str, known: Collection[str]) -> ConfigError:
    hint = suggest(key, known)
    if not hint:
        hint = f" (known: {', '.join(sorted(known))})" if known else ""
    return ConfigError(f'{where} has an unknown key "{key}"{hint}')


def check_keys(table: Mapping[str, Any], known: Collection[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise unknown_key(where, key, known)


def check_document(data: Mapping[str, Any]) -> None:
    """Every top-level key and every key of a registered section is known."""
    known_top = {*SECTIONS, *TOP_LEVEL_SCALARS}
    for name, value in data.items():
        if name in TOP_LEVEL_SCALARS:
            want = TOP_LEVEL_SCALARS[name]
            if not isinstance(value, want):
                raise ConfigError(f"{name} must be a {_kind(want)}, not {value!r}")
            continue
        section = SECTIONS.get(name)
        if section is None:
            hint = suggest(name, known_top) or _in_a_section(name)
            raise ConfigError(
                f'unknown section or key "{name}"{hint or " (known: " + ", ".join(sorted(known_top)) + ")"}'
            )
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{name}] must be a table, not {value!r}")
        if section.keys is not None:
            check_keys(value, section.keys, f"[{name}]")
        if section.named:
            for entry, table in value.items():
                if not isinstance(table, Mapping):
                    if section.scalar_entries:
                        continue
                    raise ConfigError(f"[{name}.{entry}] must be a table, not {table!r}")
                if section.entry_keys is not None:
                    check_keys(table, section.entry_keys, f"[{name}.{entry}]")


def _in_a_section(key: str) -> str:
    """``; did you mean [server] port?`` for a section's key written at the top level."""
    for name, section in SECTIONS.items():
        if section.keys is not None and key in section.keys:
            return f"; did you mean [{name}] {key}?"
    return ""


# ----------------------------------------------------------------------------- typed readers


def _kind(t: type) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean (true or false)"}.get(
        t, t.__name__
    )


def get_str(table: Mapping[str, Any], key: str, default: str, where: str) -> str:
    v = table.get(key, default)
    if not isinstance(v, str):
        raise ConfigError(f"{where} {key} must be a string, not {v!r}")
    return v


def get_bool(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    v = table.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{where} {key} must be true or false, not {v!r}")
    return v


def get_int(table: Mapping[str, Any], key: str, default: int, where: str, *, least: int | None = None) -> int:
    v = table.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where} {key} must be an integer, not {v!r}")
    if least is not None and v < least:
        raise ConfigError(f"{where} {key} must be at least {least}, not {v!r}")
    return v


def get_float(
    table: Mapping[str, Any], key: str, default: float, where: str, *, above: float | None = None
) -> float:
    v = table.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{where} {key} must be a number, not {v!r}")
    if above is not None and not v > above:
        raise ConfigError(f"{where} {key} must be above {above:g}, not {v!r}")
    return float(v)
