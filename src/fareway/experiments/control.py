"""The life of an experiment: ``running`` <-> ``paused``, then ``stopped`` or ``promoted``.

=============  ======================================================================
status         what a call to the experiment's model name gets
=============  ======================================================================
``running``    its arm (shadow: the control; split: the assigned arm); sampled calls are judged
``paused``     the control; nothing is judged; ``resume`` goes back to running
``stopped``    the control, for good (the results stay)
``promoted``   the winner (``promoted_to``), for good: the model name points at it
=============  ======================================================================

Promotion goes to the decision's winner (challenger when "not worse within the margin", control
when "control better"); without a decision only an explicit ``to`` promotes.  The same rules
serve the admin API (through the running gateway) and ``fareway experiments`` (on the database;
a running gateway applies the change within a second or so).
"""

from __future__ import annotations

from fareway.errors import BadRequest, ClientError
from fareway.experiments.settings import ExperimentSettings
from fareway.experiments.stats import Tally, decide

ACTIONS = ("pause", "resume", "stop", "promote")


class Conflict(ClientError):
    """The action does not fit the experiment's state (409)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


def transition(
    settings: ExperimentSettings,
    status: str,
    promoted_to: str | None,
    action: str,
    tally: Tally,
    to: str | None = None,
) -> tuple[str, str | None]:
    """The (status, promoted_to) after ``action``; raises Conflict or BadRequest."""
    name = settings.name
    if action not in ACTIONS:
        raise BadRequest(f"Unknown action `{action}`: {', '.join(ACTIONS)}.")
    if status == "promoted":
        raise Conflict(f"The experiment `{name}` is promoted already (to {promoted_to}).")
    if status == "stopped" and action != "promote":
        raise Conflict(
            f"The experiment `{name}` is stopped; it cannot be {action}d (promote is still possible)."
        )
    if action == "pause":
        return "paused", None
    if action == "resume":
        return "running", None
    if action == "stop":
        return "stopped", None
    if to is None:
        d = decide(tally, settings.margin, settings.max_inconsistency)
        if d.winner is None:
            raise Conflict(
                f"The experiment `{name}` has no decision yet: {d.text}. To promote anyway, name the arm: "
                "`to` (API) or `--to` (CLI): control or challenger."
            )
        to = d.winner
    if to not in ("control", "challenger"):
        raise BadRequest("`to` must be control or challenger.", param="to")
    return "promoted", settings.arm_model(to)
