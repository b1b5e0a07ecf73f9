"""Which arm serves a call, and whether it is judged: deterministic hashes, no state.

Sticky assignment: the *unit* of an experiment (``sticky``) is the request's ``user`` (OpenAI
``user``, Anthropic ``metadata.user_id``), the caller's Fareway key, or the ``x-fareway-ab-key``
header.  When the chosen unit is missing from a request the next one is used: header -> user ->
key (every call has a key).  The unit is hashed with the experiment's name (BLAKE2b, 64 bits) to
a number in [0, 1); below ``split`` is the challenger.  So one unit always gets the same arm,
across calls, restarts and gateway instances, and two experiments split units independently.

Sampling hashes the request id the same way (a different domain byte): a call is judged when
its hash is below ``sample``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from fareway.experiments.settings import ExperimentSettings
from fareway.pipeline.context import CallContext

Arm = Literal["control", "challenger"]
HEADER = "x-fareway-ab-key"
_SCALE = float(1 << 64)


def unit_hash(experiment: str, domain: bytes, value: str) -> float:
    """A uniform number in [0, 1) for ``value`` in ``experiment`` (``domain`` separates uses)."""
    h = hashlib.blake2b(
        value.encode("utf-8", "surrogatepass"), digest_size=8, key=experiment.encode()[:64], person=domain
    )
    return int.from_bytes(h.digest(), "big") / _SCALE


def unit_of(settings: ExperimentSettings, ctx: CallContext) -> str:
    """The assignment unit of this call, tagged with its kind (``user:alice``, ``key:k_1``)."""
    if settings.sticky == "header":
        v = ctx.headers.get(HEADER)
        if v:
            return "header:" + v
    if settings.sticky in ("header", "user"):
        user = ctx.req.user if ctx.req is not None else None
        if user:
            return "user:" + user
    return "key:" + ctx.principal.key_id


def arm_for(settings: ExperimentSettings, unit: str) -> Arm:
    """The arm of ``unit``: the challenger for a ``split`` share of units (split mode only)."""
    if settings.mode != "split":
        return "control"
    return "challenger" if unit_hash(settings.name, b"arm", unit) < settings.split else "control"


def sampled(settings: ExperimentSettings, request_id: str) -> bool:
    """Whether this call is judged (a ``sample`` share of calls)."""
    s = settings.sample
    return s >= 1.0 or (s > 0.0 and unit_hash(settings.name, b"sample", request_id) < s)
