"""The statistics of A/B experiments, driven in-process by many seeded simulated pairs.

A pair goes through the gateway's own code for everything but the HTTP hops: the judge prompt
(experiments.judge.judge_request) in both orders, the simulator's judge deciding on that prompt
as its dialects would see it (system text + last user text), the verdict read strictly
(read_verdict), mapped to the variants and combined (a win only when both orders agree).  The
expected win rates are hand calculations from the simulated judge's settings (sim/judge.py's
docstring derives them), never the code under test.
"""

from __future__ import annotations

import math
import random

import orjson
import pytest

from fareway.experiments.judge import (
    VERDICT_SCHEMA,
    as_variant,
    family_warnings,
    judge_request,
    maker_of,
    read_verdict,
)
from fareway.experiments.stats import ConfidenceSequence, Tally, combine, decide, psi_e
from fareway.sim.content import lorem
from fareway.sim.judge import JudgeSpec, letter, verdict_text
from fareway.types import ChatRequest

CONTROL, CHALLENGER = "[control]", "[challenger]"


def _hint(req: ChatRequest) -> str:
    """What the simulator's dialects hand the judge: the system text and the last user text."""
    return req.messages[0].text() + "\n" + req.messages[-1].text()


def _answers(i: int) -> tuple[str, str]:
    body = "".join(lorem(i, 14))
    return f"{CONTROL} {body}", f"{CHALLENGER} {body}"


def pair(spec: JudgeSpec, seed: int, i: int, *, full: bool = False) -> tuple[str, bool]:
    """One simulated pair's outcome and order-consistency.  ``full``: the judge's whole JSON
    answer is generated and read (slower); else only its letter."""
    control, challenger = _answers(i)
    convo = f"[user]\nquestion number {i}: what should I do?"
    first = judge_request("judge", convo, control, challenger)  # control shown first
    second = judge_request("judge", convo, challenger, control)
    if full:
        l1 = read_verdict(verdict_text(spec, _hint(first), VERDICT_SCHEMA, seed))
        l2 = read_verdict(verdict_text(spec, _hint(second), VERDICT_SCHEMA, seed))
    else:
        l1, l2 = letter(spec, _hint(first), seed), letter(spec, _hint(second), seed)
    return combine(as_variant(l1, True), as_variant(l2, False))


def expected_win_rate(p: float, b: float, t: float = 0.0) -> float:
    """Hand calculation (sim/judge.py): a win needs both orders to agree; ties count half."""
    return t / 2 + (1 - t) * (b / 2 + p * (1 - b))


# ------------------------------------------------------------------- the confidence sequence


def test_psi_and_a_hand_computed_interval() -> None:
    # psi_E(0.5) = (-ln 0.5 - 0.5) / 4
    assert psi_e(0.5) == pytest.approx((math.log(2) - 0.5) / 4)
    # 100 ties: mu stays 1/2, so every v_i = 0 and lambda sits at its cap 1/2; the half width is
    # log(2/alpha) / (100 * 1/2) = ln(40) / 50 around the center 1/2.
    cs = ConfidenceSequence(0.05)
    for _ in range(100):
        cs.add(0.5)
    lo, hi = cs.interval
    assert lo == pytest.approx(0.5 - math.log(40) / 50, abs=1e-12)
    assert hi == pytest.approx(0.5 + math.log(40) / 50, abs=1e-12)


def test_the_interval_starts_uninformative_and_refuses_values_outside_0_1() -> None:
    cs = ConfidenceSequence(0.05)
    assert cs.interval == (0.0, 1.0)
    cs.add(1.0)
    assert cs.interval == (0.0, 1.0)  # one pair says nothing at 95 %
    with pytest.raises(ValueError):
        cs.add(1.5)


@pytest.mark.parametrize(
    ("p", "b", "t"),
    [(0.7, 0.0, 0.0), (0.35, 0.2, 0.0), (0.8, 0.1, 0.2)],
)
def test_the_interval_covers_the_true_win_rate_in_at_least_95_percent_of_seeded_runs(
    p: float, b: float, t: float
) -> None:
    truth = expected_win_rate(p, b, t)
    spec = JudgeSpec(prefer=CHALLENGER, over=CONTROL, preference=p, position_bias=b, tie=t)
    runs, n = 200, 200
    covered_always = 0
    finals = []
    for seed in range(runs):
        tally = Tally(0.05)
        ok = True
        for i in range(n):
            outcome, consistent = pair(spec, seed, i)
            tally.add(outcome, consistent)
            lo, hi = tally.cs.interval
            ok = ok and lo <= truth <= hi
        covered_always += ok
        finals.append(tally.win_rate)
    # covered at *every* n of the run (the always-valid claim), not only at the end
    assert covered_always / runs >= 0.95
    assert sum(finals) / runs == pytest.approx(truth, abs=0.01)


def test_the_win_rate_converges_to_the_set_preference() -> None:
    spec = JudgeSpec(prefer=CHALLENGER, over=CONTROL, preference=0.7)
    tally = Tally(0.05)
    widths = []
    for i in range(4000):
        tally.add(*pair(spec, 11, i, full=True))
        if i + 1 in (250, 1000, 4000):
            lo, hi = tally.cs.interval
            widths.append(hi - lo)
    assert tally.win_rate == pytest.approx(0.7, abs=0.02)
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.1
    lo, hi = tally.cs.interval
    assert lo <= 0.7 <= hi
    assert tally.unparseable == 0 and tally.inconsistent == 0  # no position bias: both orders agree


def test_position_bias_shows_as_order_inconsistency_and_pulls_the_rate_to_one_half() -> None:
    spec = JudgeSpec(prefer=CHALLENGER, over=CONTROL, preference=0.9, position_bias=0.3)
    tally = Tally(0.05)
    for i in range(3000):
        tally.add(*pair(spec, 5, i))
    # pairs whose verdicts differ: b (the order with the better answer second was swayed)
    assert tally.inconsistency_rate == pytest.approx(0.3, abs=0.03)
    assert tally.win_rate == pytest.approx(expected_win_rate(0.9, 0.3), abs=0.02)


def test_a_judge_that_always_prefers_the_first_answer_yields_ties_not_a_winner() -> None:
    spec = JudgeSpec(prefer=CHALLENGER, over=CONTROL, preference=0.9, position_bias=1.0)
    for seed in range(20):
        tally = Tally(0.05)
        for i in range(200):
            tally.add(*pair(spec, seed, i))
            d = decide(tally, 0.05, 0.5, estimate=False)
            assert d.winner is None and d.code == "keep_collecting"
        assert (tally.wins, tally.losses, tally.ties) == (0, 0, 200)
        assert tally.win_rate == 0.5 and tally.inconsistency_rate == 1.0
    assert "contradicts itself" in decide(tally, 0.05, 0.5).text


def _naive_z_rejects(xs: list[float]) -> bool:
    """A fixed-sample 95 % z-test of mean = 1/2, checked after every observation from the 10th."""
    s = s2 = 0.0
    for n, x in enumerate(xs, 1):
        s += x
        s2 += x * x
        if n >= 10:
            mean = s / n
            var = max(s2 / n - mean * mean, 1e-12)
            if abs(mean - 0.5) > 1.96 * math.sqrt(var / n):
                return True
    return False


def test_at_a_true_tie_checking_after_every_pair_declares_a_winner_in_at_most_5_percent_of_runs() -> None:
    spec = JudgeSpec(prefer=CHALLENGER, over=CONTROL, preference=0.5)
    runs, n = 300, 300
    declared = naive = 0
    for seed in range(runs):
        tally = Tally(0.05)
        scores = []
        winner = False
        for i in range(n):
            outcome, consistent = pair(spec, seed, i)
            tally.add(outcome, consistent)
            scores.append({"win": 1.0, "loss": 0.0}.get(outcome, 0.5))
            d = decide(tally, 0.05, 0.5, estimate=False)
            # a winner: control better, or the challenger better (not merely not worse)
            winner = winner or d.code == "control_better" or d.challenger_better
        declared += winner
        naive += _naive_z_rejects(scores)
    assert declared / runs <= 0.05
    # the research's point, in the same runs: a fixed-sample test read after every pair is wrong
    # far more often than its nominal 5 %
    assert naive / runs > 0.15


# ------------------------------------------------------------------------- the decision


def _tally(wins: int, ties: int, losses: int, seed: int = 0) -> Tally:
    t = Tally(0.05)
    outcomes = ["win"] * wins + ["tie"] * ties + ["loss"] * losses
    random.Random(seed).shuffle(outcomes)
    for o in outcomes:
        t.add(o, True)
    return t


def test_decisions_and_the_projection_of_more_pairs() -> None:
    assert decide(_tally(0, 0, 0), 0.05).code == "keep_collecting"
    good = decide(_tally(700, 0, 300), 0.05)
    assert good.code == "challenger_not_worse" and good.winner == "challenger" and good.challenger_better
    near = decide(_tally(480, 0, 520), 0.1)  # a little worse, well within a 10 % margin
    assert near.code == "challenger_not_worse" and not near.challenger_better
    bad = decide(_tally(300, 0, 700), 0.05)
    assert bad.code == "control_better" and bad.winner == "control"
    early = decide(_tally(14, 0, 6), 0.05)
    assert early.code == "keep_collecting" and early.more_pairs is not None
    assert early.text == f"keep collecting (about {early.more_pairs:,} more pairs)"
    # the projection is honest to within a factor of two: the same mix decides by then
    n = 20 + 2 * early.more_pairs
    later = decide(_tally(round(0.7 * n), 0, n - round(0.7 * n)), 0.05)
    assert later.code == "challenger_not_worse"
    # at margin 0 and a win rate of exactly 1/2 nothing is in sight
    assert decide(_tally(50, 0, 50), 0.0).text.startswith("keep collecting (no decision in sight")


def test_combine_needs_both_orders_to_agree_for_a_win() -> None:
    assert combine("challenger", "challenger") == ("win", True)
    assert combine("control", "control") == ("loss", True)
    assert combine("tie", "tie") == ("tie", True)
    assert combine("control", "challenger") == ("tie", False)
    assert combine("tie", "challenger") == ("tie", False)
    assert combine("unparseable", "challenger") == ("unparseable", False)
    assert combine("error", "unparseable") == ("error", False)


# ------------------------------------------------------------------------------- the judge


def test_the_verdict_is_read_strictly_and_never_guessed() -> None:
    assert read_verdict('{"reason": "B is right", "winner": "B"}') == "B"
    assert read_verdict(' {"winner": "tie", "reason": ""}\n') == "tie"
    for bad in (
        "B",
        "The winner is B.",
        '```json\n{"reason": "x", "winner": "A"}\n```',
        '{"winner": "A"}',
        '{"reason": "x", "winner": "a"}',
        '{"reason": "x", "winner": "A", "confidence": 0.9}',
        '{"reason": 3, "winner": "A"}',
        "[]",
    ):
        assert read_verdict(bad) is None, bad
    assert as_variant("A", True) == "control" and as_variant("A", False) == "challenger"
    assert as_variant("B", True) == "challenger" and as_variant(None, True) == "unparseable"


def test_the_judge_request_is_blind_strict_and_bounded() -> None:
    req = judge_request("anthropic/claude-sonnet-4-5", "[user]\nhi", "first answer", "second answer")
    rf = req.response_format
    assert rf is not None and rf.type == "json_schema" and rf.strict is True
    assert rf.schema == VERDICT_SCHEMA and rf.schema["additionalProperties"] is False
    user = req.messages[-1].text()
    assert user.index("first answer") < user.index("second answer")
    assert "gpt" not in user and "claude" not in user  # no model names reach the judge
    assert req.max_tokens is not None and req.temperature == 0.0


def test_the_simulated_judge_answers_the_verdict_schema() -> None:
    spec = JudgeSpec(prefer=CHALLENGER, over=CONTROL, preference=1.0)
    control, challenger = _answers(1)
    req = judge_request("judge", "[user]\nq", control, challenger)
    obj = orjson.loads(verdict_text(spec, _hint(req), VERDICT_SCHEMA, 0))
    assert set(obj) == {"reason", "winner"} and obj["winner"] == "B"
    swapped = judge_request("judge", "[user]\nq", challenger, control)
    assert orjson.loads(verdict_text(spec, _hint(swapped), VERDICT_SCHEMA, 0))["winner"] == "A"
    prose = JudgeSpec(unparseable=1.0)
    assert read_verdict(verdict_text(prose, _hint(req), VERDICT_SCHEMA, 0)) is None
    with pytest.raises(ValueError, match="position_bias"):
        JudgeSpec.from_obj("j", {"position_bias": 2})
    with pytest.raises(ValueError, match="unknown"):
        JudgeSpec.from_obj("j", {"bias": 0.1})


def test_a_judge_of_a_variants_family_or_maker_is_warned_about() -> None:
    assert maker_of("llama-3.3-70b") == "Meta" and maker_of("claude-haiku-4-5") == "Anthropic"
    assert maker_of("gpt-oss-120b") == "OpenAI" and maker_of("something-else") is None
    same = family_warnings(
        ("openai/gpt-4o", "gpt-4o"),
        {
            "control": ("openai/gpt-4o", "gpt-4o"),
            "challenger": ("groq/llama-3.3-70b-versatile", "llama-3.3-70b"),
        },
    )
    assert len(same) == 1 and "same model family (gpt-4o) as the control" in same[0]
    maker = family_warnings(
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        {
            "control": ("openai/gpt-4o", "gpt-4o"),
            "challenger": ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
        },
    )
    assert len(maker) == 1 and "both Anthropic models" in maker[0] and "challenger" in maker[0]
    assert (
        family_warnings(
            ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
            {"control": ("openai/gpt-4o", "gpt-4o"), "challenger": ("groq/x", "llama-3.3-70b")},
        )
        == []
    )


def test_the_interval_over_time_is_thinned_but_keeps_its_ends() -> None:
    from fareway.experiments.results import MAX_POINTS, History
    from fareway.experiments.settings import parse
    from fareway.experiments.store import PairRecord

    s = parse("e", {"model": "m", "control": "a/b", "challenger": "c/d", "judge": "e/f"})
    h = History(s)
    outcomes = ["win", "loss", "tie", "unparseable"] * 1000
    for i, o in enumerate(outcomes):
        v = {"win": "challenger", "loss": "control", "tie": "tie", "unparseable": "unparseable"}[o]
        h.add(PairRecord("e", f"r{i}", "control", v, v, o))
    points = h.series()
    assert MAX_POINTS <= len(points) <= 2 * MAX_POINTS + 1
    ns = [p["pairs"] for p in points]
    assert ns == sorted(set(ns)) and ns[-1] == 3000 == h.tally.pairs
    assert h.tally.unparseable == 1000
    assert points[-1]["win_rate"] == 0.5
