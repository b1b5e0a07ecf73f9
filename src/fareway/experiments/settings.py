"""An experiment's settings: the ``[experiments.NAME]`` tables of the config (and the JSON body of
``POST /v1/experiments``, which takes the same keys plus ``name``).

::

    [experiments.support-bot]
    model = "support"            # the model name callers send: an alias, auto, or any model
    mode = "shadow"              # shadow: callers always get the control; split: a share gets the challenger
    control = "openai/gpt-4o"
    challenger = "groq/llama-3.3-70b-versatile"
    split = 0.5                  # split mode: the share of assignment units sent to the challenger
    sticky = "user"              # user | key | header (x-fareway-ab-key): what keeps a caller on one arm
    judge = "anthropic/claude-sonnet-4-5"
    sample = 0.2                 # the share of calls judged
    judge_budget_usd = 5.0       # judge and shadow spend stop here
    margin = 0.05                # "not worse" margin for the decision (in win rate)
    alpha = 0.05                 # error rate of the always-valid interval
    max_concurrent = 4           # pairs being made at once; a sampled call beyond this is dropped (counted)
    timeout = 120                # seconds one pair may take (the other arm's call and both verdicts)
    max_inconsistency = 0.5      # above this order-inconsistency rate no decision is given

Only ``model``, ``control``, ``challenger`` and ``judge`` are required.  Unknown keys and wrong
types raise :class:`SettingsError` naming the key (``load_config`` turns it into a ConfigError,
the admin API into a 400).  This module imports nothing of the gateway: the config loads it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal


class SettingsError(ValueError):
    """An experiment's settings are invalid; the message names the key."""


Mode = Literal["shadow", "split"]
Sticky = Literal["user", "key", "header"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Experiment names: they appear in URLs (``/v1/experiments/NAME``) and in ledger rows."""


@dataclass(frozen=True, slots=True)
class ExperimentSettings:
    name: str
    model: str
    control: str
    challenger: str
    judge: str
    mode: Mode = "shadow"
    split: float = 0.5
    sticky: Sticky = "user"
    sample: float = 0.2
    judge_budget_usd: float = 5.0
    margin: float = 0.05
    alpha: float = 0.05
    max_concurrent: int = 4
    timeout: float = 120.0
    max_inconsistency: float = 0.5

    def arm_model(self, arm: str) -> str:
        return self.control if arm == "control" else self.challenger

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_REQUIRED = ("model", "control", "challenger", "judge")
_KEYS = frozenset(ExperimentSettings.__dataclass_fields__) - {"name"}
KEYS = _KEYS
"""The keys an ``[experiments.NAME]`` table may hold (config_schema checks them with a suggestion)."""


def _where(name: str, key: str) -> str:
    return f"[experiments.{name}] {key}"


def _text(name: str, table: dict[str, Any], key: str) -> str:
    v = table.get(key)
    if not isinstance(v, str) or not v.strip():
        raise SettingsError(f"{_where(name, key)} must be a model name (a non-empty string), not {v!r}")
    return v.strip()


def _number(
    name: str, table: dict[str, Any], key: str, default: float, lo: float, hi: float, *, lo_open: bool = False
) -> float:
    v = table.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SettingsError(f"{_where(name, key)} must be a number, not {v!r}")
    ok = (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        bound = f"{'above' if lo_open else 'at least'} {lo:g} and at most {hi:g}"
        raise SettingsError(f"{_where(name, key)} must be {bound}, not {v!r}")
    return float(v)


def parse(name: str, table: Any) -> ExperimentSettings:
    """One ``[experiments.NAME]`` table."""
    if not isinstance(name, str) or not NAME.match(name):
        raise SettingsError(
            f"experiment name {name!r} must be 1-64 letters, digits, '.', '_' or '-' (it is used in URLs)"
        )
    if not isinstance(table, dict):
        raise SettingsError(f"[experiments.{name}] must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise SettingsError(
            f"[experiments.{name}] has unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})"
        )
    for key in _REQUIRED:
        if key not in table:
            raise SettingsError(f"[experiments.{name}] needs {key}")
    model, control, challenger, judge = (_text(name, table, k) for k in _REQUIRED)
    if control == challenger:
        raise SettingsError(f"[experiments.{name}] control and challenger are the same model ({control})")
    mode = table.get("mode", "shadow")
    if mode not in ("shadow", "split"):
        raise SettingsError(f'{_where(name, "mode")} must be "shadow" or "split", not {mode!r}')
    sticky = table.get("sticky", "user")
    if sticky not in ("user", "key", "header"):
        raise SettingsError(f'{_where(name, "sticky")} must be "user", "key" or "header", not {sticky!r}')
    max_concurrent = table.get("max_concurrent", 4)
    if (
        isinstance(max_concurrent, bool)
        or not isinstance(max_concurrent, int)
        or not 1 <= max_concurrent <= 1000
    ):
        raise SettingsError(f"{_where(name, 'max_concurrent')} must be an integer from 1 to 1000")
    return ExperimentSettings(
        name=name,
        model=model,
        control=control,
        challenger=challenger,
        judge=judge,
        mode=mode,
        split=_number(name, table, "split", 0.5, 0.0, 1.0),
        sticky=sticky,
        sample=_number(name, table, "sample", 0.2, 0.0, 1.0),
        judge_budget_usd=_number(name, table, "judge_budget_usd", 5.0, 0.0, 1e9),
        margin=_number(name, table, "margin", 0.05, 0.0, 0.5, lo_open=False),
        alpha=_number(name, table, "alpha", 0.05, 0.0, 0.5, lo_open=True),
        max_concurrent=max_concurrent,
        timeout=_number(name, table, "timeout", 120.0, 0.0, 86400.0, lo_open=True),
        max_inconsistency=_number(name, table, "max_inconsistency", 0.5, 0.0, 1.0),
    )


def parse_section(section: Any) -> dict[str, ExperimentSettings]:
    """The whole ``[experiments]`` section: one table per experiment.  Two experiments on one
    model name are an error (a call could not belong to both)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise SettingsError("[experiments] must be a table of [experiments.NAME] tables")
    out: dict[str, ExperimentSettings] = {}
    for name, table in section.items():
        out[name] = parse(name, table)
    check_models(out.values())
    return out


def check_models(experiments: Any) -> None:
    seen: dict[str, str] = {}
    for e in experiments:
        other = seen.get(e.model)
        if other is not None:
            raise SettingsError(
                f"experiments {other!r} and {e.name!r} are both on the model name {e.model!r}; "
                "a call can belong to one experiment only"
            )
        seen[e.model] = e.name
