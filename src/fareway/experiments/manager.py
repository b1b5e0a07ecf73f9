"""The running experiments of one gateway, and the three seams they use:

* **resolve** (:meth:`ExperimentManager.pick`, a ``pipeline.stages.ArmPicker``): a call to an
  experiment's model name is routed to its arm: the control in shadow mode, the assigned arm in
  split mode (fareway.experiments.assign), the control while paused or stopped, the winner once
  promoted.  The call is tagged for the ledger (``experiment``, ``experiment_role``) and, when
  sampled, marked for judging.  A dict lookup and a hash; never raises.
* **encode** (:meth:`ExperimentManager.wrap`, a ``StreamWrapper``): a sampled *streamed* call's
  events are folded into a copy of the answer as they pass (a non-streamed one has it whole).
* **after** (:meth:`ExperimentManager.after`, an ``AfterHook``): a sampled call that succeeded
  starts a *pair* as a task of its own and returns: the other arm's answer (a background call,
  fareway.experiments.runner), then the judge in both orders, concurrently; the pair's outcome is
  folded into the tally and written to the store.

The caller's answer is never delayed, changed or failed by any of this: the pair starts after the
call was accounted and answered, in its own task, bounded by ``max_concurrent`` pairs per
experiment (a sampled call beyond that is *dropped* and counted), by ``timeout`` seconds per
pair, and by ``judge_budget_usd``: a pair (and, in it, the verdicts) is not started once the spend
so far plus what its calls are guessed to cost (what the last call of each kind cost) plus a whole
pair for every other pair in flight would pass the budget (counted ``over_budget``); until one
pair's cost is known, pairs run one at a time.  A
background call with no known price stops the judging (the budget cannot be enforced without
prices), with a note saying so.  At shutdown the pairs still running are cancelled (their calls
are accounted as cancelled); nothing waits on a stalled judge.

State goes to the store (fareway.experiments.store) off the request path: counters and new pairs
are written every ``flush_every`` seconds (and at close); the same tick reads back status
changes made elsewhere (``fareway experiments pause`` on the command line, another gateway).
With ``[shared] experiments = "redis"`` the same tick also adds the counts and the spend to
Redis and takes back every gateway's totals (fareway.experiments.shared_counters), so the
counters and the judge budget hold across gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Coroutine
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from fareway.errors import BadRequest, FarewayError, NotFound
from fareway.events import Accumulator, StreamEvent
from fareway.experiments import assign
from fareway.experiments.control import Conflict, transition
from fareway.experiments.judge import (
    answer_text,
    as_variant,
    conversation_text,
    family_warnings,
    judge_request,
    read_verdict,
)
from fareway.experiments.queries import VariantStats, variant_stats
from fareway.experiments.results import History, State, brief, summarize
from fareway.experiments.runner import Background, BackgroundRunner
from fareway.experiments.settings import ExperimentSettings, SettingsError, check_models, parse
from fareway.experiments.shared_counters import RedisCounters
from fareway.experiments.stats import Verdict, combine
from fareway.experiments.store import COUNTERS, ExperimentStore, PairRecord, StoredExperiment
from fareway.pipeline.context import CallContext
from fareway.types import ChatResponse

if TYPE_CHECKING:
    from fareway.pipeline.gateway import Gateway

log = logging.getLogger("fareway.experiments")
T = TypeVar("T")

NOTE = "experiment"
"""``ctx.notes[NOTE] = (name, role)``: read by accounting for the ledger row."""
SAMPLE = "experiment.sample"
ANSWER = "experiment.answer"
PAIR = ("shadow", "judge", "judge")
"""The background calls of one pair: the other arm, then the judge in each order."""
DIFFERENT_DEFINITION = "another gateway runs this experiment with a different definition"
DEFINITION_FRESH_S = 60.0
"""A gateway's definition counts while it said so less than this many seconds ago."""
MAX_PENDING_PAIRS = 100_000
"""Pairs kept for the store while it cannot be written (beyond this the oldest are dropped)."""


class Unavailable(FarewayError):
    status = 503
    type = "service_unavailable"
    code = "experiments_unavailable"


class Running:
    """One experiment's live state in this gateway."""

    def __init__(self, settings: ExperimentSettings, source: str) -> None:
        self.settings = settings
        self.source = source
        self.status = "running"
        self.promoted_to: str | None = None
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        """Totals: the store's at the last load plus this gateway's since."""
        self.spend = Decimal(0)
        self.delta: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        """Not yet written to the store."""
        self.delta_spend = Decimal(0)
        self.shared_delta: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        """Not yet added to the shared counters (``[shared] experiments = "redis"``)."""
        self.shared_spend = Decimal(0)
        self.shared_warned: set[str] = set()
        self.history = History(settings)
        """Every judged pair folded: the tally and the interval over time."""
        self.pending: list[PairRecord] = []
        """Judged pairs not yet written to the store."""
        self.in_flight = 0
        self.last_cost: dict[str, Decimal] = {}
        """The cost of the last background call of each kind (``shadow``, ``judge``): the guess
        of what the next one costs, for the budget."""
        self.warnings: list[str] = []
        self.halted: str | None = None
        """Why judging stopped for good (a background call had no known price)."""

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n
        self.delta[key] += n
        self.shared_delta[key] += n

    def charge(self, cost: Decimal | None, kind: str) -> None:
        if cost is None:
            self.count("unpriced")
            if self.halted is None:
                self.halted = (
                    f"judging stopped: a {kind} call had no known price, so judge_budget_usd cannot be "
                    "enforced (set its price under [prices.PROVIDER])"
                )
                log.warning("experiment %s: %s", self.settings.name, self.halted)
            return
        self.spend += cost
        self.delta_spend += cost
        self.shared_spend += cost
        self.last_cost[kind] = cost

    def affordable(self, *calls: str, others: int | None = None) -> bool:
        """Whether calls of these kinds fit in what is left of the budget, each guessed at what
        the last call of its kind cost (nothing known yet: 0, and the spend must be under it),
        with every other pair in flight counted as a whole pair still to pay (``others``: how
        many; by default all of them): so pairs running at once cannot pass the budget together."""
        if self.halted is not None:
            return False
        budget = Decimal(str(self.settings.judge_budget_usd))
        running = self.in_flight if others is None else others
        guess = self.guess(*calls) + running * self.guess(*PAIR)
        return self.spend < budget and self.spend + guess <= budget

    def guess(self, *calls: str) -> Decimal:
        return sum((self.last_cost.get(kind, Decimal(0)) for kind in calls), Decimal(0))

    def add_pair(self, pair: PairRecord) -> None:
        self.pending.append(pair)
        if len(self.pending) > MAX_PENDING_PAIRS:
            del self.pending[0]
        self.history.add(pair)

    def state(self) -> State:
        notes = [self.halted] if self.halted else []
        if self.halted is None and not self.affordable(*PAIR, others=0):
            notes.append("judging stopped: judge_budget_usd is spent (or the next pair would pass it)")
        return State(
            self.settings,
            self.source,
            self.status,
            self.promoted_to,
            dict(self.counters),
            self.spend,
            list(self.warnings),
            notes,
            self.in_flight,
        )


class ExperimentManager:
    """Owns the experiments of one gateway (see the module docstring)."""

    def __init__(
        self,
        gateway: Gateway,
        store: ExperimentStore | None,
        experiments: dict[str, ExperimentSettings],
        *,
        flush_every: float = 1.0,
        counters: RedisCounters | None = None,
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.counters = counters
        self.flush_every = flush_every
        self.runner = BackgroundRunner(gateway.resolver, gateway.executor, gateway.accounting)
        self.experiments: dict[str, Running] = {}
        self.by_model: dict[str, Running] = {}
        for s in experiments.values():
            self._add(s, "config")
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False
        self._installed = False
        self._write_lock = asyncio.Lock()
        self.ready: bool | None = None
        """The store was read (True), is not answering (False), not tried yet (None)."""

    # ------------------------------------------------------------------ lifecycle

    def _add(self, settings: ExperimentSettings, source: str) -> Running:
        run = Running(settings, source)
        run.warnings = self._warnings(settings)
        self.experiments[settings.name] = run
        self.by_model[settings.model] = run
        return run

    def install(self) -> None:
        """Put the manager in the gateway's seams (once; only when there is an experiment, so a
        gateway without any pays nothing)."""
        if self._installed:
            return
        self._installed = True
        self.gateway.pickers.append(self)
        self.gateway.wrappers.append(self)
        self.gateway.after_hooks.append(self)

    async def start(self) -> None:
        if self.experiments:
            self.install()
        if self.store is not None:
            try:
                await self._load()
            except Exception as exc:  # experiments never keep the gateway from serving
                self._store_down(exc)
        await self._share_quietly()
        self._ticker = asyncio.create_task(self._tick(), name="fareway-experiments")

    async def _load(self) -> None:
        """Open the store and take its state: statuses, counters and pairs so far (kept: what this
        gateway counted and judged before the store answered)."""
        assert self.store is not None
        await self.store.start()
        stored = {e.name: e for e in await self.store.load()}
        for name, run in self.experiments.items():
            row = stored.pop(name, None)
            if row is None or row.definition != run.settings.as_dict() or row.source != "config":
                row = await self.store.ensure(name, "config", run.settings.as_dict())
            self._apply_row(run, row, initial=True)
        for row in stored.values():
            if row.source == "api":
                self._adopt_api(row)
        for run in self.experiments.values():
            pairs = await self.store.pairs(run.settings.name)
            history = await asyncio.to_thread(History.of, run.settings, [*pairs, *run.pending])
            run.history = history
        if self.experiments:
            self.install()
        if self.ready is False:
            log.warning("experiments: their state database answers again")
        self.ready = True

    def _store_down(self, exc: BaseException) -> None:
        if self.ready is not False:
            log.warning(
                "experiments: their state database is unavailable (%s: %s); experiments go on, their "
                "state is kept in memory and written when it is back",
                type(exc).__name__,
                exc,
            )
        self.ready = False

    def _adopt_api(self, row: StoredExperiment) -> Running | None:
        try:
            settings = parse(row.name, {k: v for k, v in row.definition.items() if k != "name"})
        except SettingsError as exc:
            log.error("experiment %s in the store is not valid (%s): left out", row.name, exc)
            return None
        clash = self.by_model.get(settings.model)
        if clash is not None:
            log.error(
                "experiment %s (from the API) is on the model %s of experiment %s: left out",
                row.name,
                settings.model,
                clash.settings.name,
            )
            return None
        run = self._add(settings, "api")
        self._apply_row(run, row, initial=True)
        return run

    def _apply_row(self, run: Running, row: StoredExperiment, *, initial: bool) -> None:
        run.status = row.status
        run.promoted_to = row.promoted_to
        if initial:
            run.counters = {k: row.counters.get(k, 0) + run.delta[k] for k in COUNTERS}
            run.spend = row.spend + run.delta_spend

    async def close(self) -> None:
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.counters is not None:
            await self._share_quietly()
            await self.counters.close()
        if self.store is not None:
            try:
                await self.flush()
            except Exception as exc:
                log.error(
                    "experiments: their last state could not be written (%s: %s)", type(exc).__name__, exc
                )
            finally:
                await self.store.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            await self._share_quietly()
            if self.store is None:
                continue
            try:
                if not self.ready:
                    await self._load()
                await self.flush()
                await self.refresh()
            except Exception as exc:  # the store being unreachable must not end the ticker
                self._store_down(exc)

    async def flush(self) -> None:
        """Write the counters and new pairs to the store."""
        if self.store is None or not self.ready:
            return
        async with self._write_lock:
            for run in list(self.experiments.values()):
                name = run.settings.name
                if run.pending:
                    batch = list(run.pending)
                    await self.store.add_pairs(batch)
                    del run.pending[: len(batch)]
                if any(run.delta.values()) or run.delta_spend:
                    delta, spend = dict(run.delta), run.delta_spend
                    await self.store.add(name, delta, spend)
                    for k, v in delta.items():
                        run.delta[k] -= v
                    run.delta_spend -= spend

    async def share(self) -> None:
        """Add this gateway's counts and spend since the last time to the shared counters and
        take back every gateway's totals (``[shared] experiments = "redis"``).  Raises when Redis
        does not answer (what was counted stays to be added next time)."""
        if self.counters is None:
            return
        for run in list(self.experiments.values()):
            delta, spend = dict(run.shared_delta), run.shared_spend
            seed = {k: run.counters[k] - delta[k] for k in COUNTERS}
            mine = fingerprint(run.settings)
            totals, total_spend, defs = await self.counters.add(
                run.settings.name, delta, spend, seed, run.spend - spend, mine
            )
            self._check_definitions(run, mine, defs)
            for k, v in delta.items():
                run.shared_delta[k] -= v
            run.shared_spend -= spend
            run.counters = {k: totals[k] + run.shared_delta[k] for k in COUNTERS}
            run.spend = total_spend + run.shared_spend

    def _check_definitions(self, run: Running, mine: str, defs: dict[str, tuple[str, float]]) -> None:
        """Warn (in the experiment's warnings and the log) while another live gateway runs this
        experiment with another definition: it may assign a subject to another arm."""
        assert self.counters is not None
        horizon = self.counters.wall() - DEFINITION_FRESH_S
        others = sorted(
            g
            for g, (fp, when) in defs.items()
            if g != self.counters.instance and fp != mine and when >= horizon
        )
        run.warnings = [w for w in run.warnings if not w.startswith(DIFFERENT_DEFINITION)]
        if others:
            text = (
                f"{DIFFERENT_DEFINITION} ({', '.join(others)}): a subject may get another arm there; "
                "give every gateway the same [experiments] table"
            )
            if text not in run.shared_warned:
                run.shared_warned.add(text)
                log.warning("experiment %s: %s", run.settings.name, text)
            run.warnings.append(text)

    async def _share_quietly(self) -> None:
        with contextlib.suppress(Exception):  # Redis down: counted in memory (logged by counters)
            await self.share()

    async def refresh(self) -> None:
        """Status changes made elsewhere (the CLI, another gateway) and experiments created there."""
        if self.store is None or not self.ready:
            return
        for row in await self.store.load():
            run = self.experiments.get(row.name)
            if run is None:
                if row.source == "api" and self._adopt_api(row) is not None:
                    self.install()
                continue
            if (row.status, row.promoted_to) != (run.status, run.promoted_to):
                run.status, run.promoted_to = row.status, row.promoted_to

    async def drain(self) -> None:
        """Wait for every pair now running, then write the state (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.flush()
        await self._share_quietly()

    # ------------------------------------------------------------------ the seams

    def pick(self, ctx: CallContext) -> str | None:
        req = ctx.req
        if req is None:
            return None
        run = self.by_model.get(req.model)
        if run is None:
            return None
        s = run.settings
        status = run.status
        if status == "promoted":
            return run.promoted_to
        if status != "running":
            return s.control
        try:
            arm = assign.arm_for(s, assign.unit_of(s, ctx))
            run.count("calls_control" if arm == "control" else "calls_challenger")
            ctx.notes[NOTE] = (s.name, arm)
            if assign.sampled(s, ctx.request_id):
                run.count("sampled")
                ctx.notes[SAMPLE] = run
        except Exception:  # an experiment never fails a call
            log.exception("experiment %s: assignment failed for %s", s.name, ctx.request_id)
            return s.control
        return s.arm_model(arm)

    def wrap(self, ctx: CallContext, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        if SAMPLE not in ctx.notes or not ctx.stream:
            return events
        return self._tee(ctx, events)

    async def _tee(self, ctx: CallContext, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        acc = Accumulator()
        ctx.notes[ANSWER] = acc
        async for e in events:
            acc.add(e)
            yield e

    def wants(self, ctx: CallContext) -> bool:
        return SAMPLE in ctx.notes

    async def after(self, ctx: CallContext) -> None:
        run: Running | None = ctx.notes.get(SAMPLE)
        if run is None or ctx.outcome != "ok":
            return
        answer = ctx.response
        if answer is None:
            acc: Accumulator | None = ctx.notes.get(ANSWER)
            if acc is None or not acc.finished:
                return
            answer = acc.result()
        # until a whole pair's cost is known, pairs run one at a time (the budget needs the guess)
        limit = run.settings.max_concurrent if "judge" in run.last_cost else 1
        if self._closed or run.status != "running" or run.in_flight >= limit:
            run.count("dropped")
            return
        if not run.affordable(*PAIR):
            run.count("over_budget")
            return
        run.in_flight += 1
        task = asyncio.ensure_future(self._pair(run, ctx, answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ pairs

    async def _pair(self, run: Running, ctx: CallContext, answer: ChatResponse) -> None:
        try:
            await self._judge_pair(run, ctx, answer)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("experiment %s: judging %s failed", run.settings.name, ctx.request_id)
        finally:
            run.in_flight -= 1

    async def _judge_pair(self, run: Running, ctx: CallContext, answer: ChatResponse) -> None:
        s = run.settings
        req = ctx.req
        assert req is not None
        served = ctx.notes[NOTE][1]
        other = "challenger" if served == "control" else "control"
        rid = ctx.request_id
        verdicts: list[Verdict] = ["error", "error"]
        note: str | None = None
        cost = Decimal(0)
        unpriced = False

        def charger(kind: str) -> Any:
            def charge(c: Decimal | None) -> None:
                nonlocal cost, unpriced
                run.charge(c, kind)
                if c is None:
                    unpriced = True
                else:
                    cost += c

            return charge

        try:
            async with asyncio.timeout(s.timeout):
                shadow_req = dataclasses.replace(
                    req, model=s.arm_model(other), stream=False, include_usage=False
                )
                shadow = await self.runner.run(
                    request_id=f"{rid}.shadow",
                    experiment=s.name,
                    role=f"shadow-{other}",
                    req=shadow_req,
                    wire=ctx.wire,
                    charge=charger("shadow"),
                )
                if shadow.response is None:
                    note = f"the {other}'s call failed: {shadow.error}"
                elif not run.affordable("judge", "judge", others=run.in_flight - 1):
                    run.count("over_budget")
                    return
                else:
                    answers = {served: answer, other: shadow.response}
                    convo = conversation_text(req)
                    a_control, a_challenger = (
                        answer_text(answers["control"]),
                        answer_text(answers["challenger"]),
                    )
                    first, second = await asyncio.gather(
                        self._verdict(
                            run, ctx, f"{rid}.judge1", convo, a_control, a_challenger, charger("judge")
                        ),
                        self._verdict(
                            run, ctx, f"{rid}.judge2", convo, a_challenger, a_control, charger("judge")
                        ),
                    )
                    verdicts = [as_verdict(first, True), as_verdict(second, False)]
                    errs = [b.error for b in (first, second) if b.response is None and b.error]
                    if errs:
                        note = "the judge's call failed: " + "; ".join(errs)
        except TimeoutError:
            note = f"the pair took longer than timeout = {s.timeout:g}s"
        outcome, _ = combine(verdicts[0], verdicts[1])
        if outcome == "unparseable" and note is None:
            note = "the judge's answer was not the verdict object"
        run.add_pair(
            PairRecord(
                experiment=s.name,
                request_id=rid,
                served=served,
                verdict_1=verdicts[0],
                verdict_2=verdicts[1],
                outcome=outcome,
                cost=None if unpriced else cost,
                note=note,
            )
        )

    async def _verdict(
        self,
        run: Running,
        ctx: CallContext,
        request_id: str,
        convo: str,
        answer_a: str,
        answer_b: str,
        charge: Any,
    ) -> Background:
        req = judge_request(run.settings.judge, convo, answer_a, answer_b)
        return await self.runner.run(
            request_id=request_id,
            experiment=run.settings.name,
            role="judge",
            req=req,
            wire=ctx.wire,
            charge=charge,
        )

    # ------------------------------------------------------------------ warnings

    def _family(self, name: str) -> tuple[str, str]:
        router = self.gateway.resolver.router
        catalog = router.catalog
        provider, _, model = name.partition("/")
        if model:
            offer = catalog.offer(provider, model)
            return name, offer.family if offer is not None else model
        for o in catalog.offers():
            if o.model == name or o.family == name:
                return name, o.family
        return name, name

    def _warnings(self, s: ExperimentSettings) -> list[str]:
        try:
            return family_warnings(
                self._family(s.judge),
                {"control": self._family(s.control), "challenger": self._family(s.challenger)},
            )
        except Exception:  # a warning is a nicety
            log.exception("experiment %s: checking the judge's family failed", s.name)
            return []

    # ------------------------------------------------------------------ queries and control

    def get(self, name: str) -> Running:
        run = self.experiments.get(name)
        if run is None:
            raise NotFound(f"No experiment named `{name}`.", param="name", code="experiment_not_found")
        return run

    async def _write(self, aw: Coroutine[Any, Any, T]) -> T:
        """A change the caller waits for (create, pause...): refused with a 503 while the store
        does not answer, so that it is never lost."""
        if not self.ready:
            aw.close()
            raise Unavailable("The experiments' state database is unavailable right now; try again shortly.")
        try:
            return await aw
        except Exception as exc:
            self._store_down(exc)
            raise Unavailable(
                "The experiments' state database is unavailable right now; try again shortly."
            ) from exc

    async def variants(self, name: str) -> dict[str, VariantStats] | None:
        ledger = self.gateway.accounting.ledger
        store = getattr(ledger, "store", None)
        if store is None or not hasattr(store, "fetch"):
            return None
        return await variant_stats(store, name)

    async def summary(self, name: str, *, with_series: bool = True) -> dict[str, Any]:
        run = self.get(name)
        state = run.state()
        try:
            variants = await self.variants(name)
        except Exception as exc:  # the ledger's database down: the rest of the results still stand
            variants = None
            state.notes.append(
                f"per-variant numbers unavailable: the ledger could not be read ({type(exc).__name__})"
            )
        return summarize(state, run.history, variants, with_series=with_series)

    async def list(self) -> list[dict[str, Any]]:
        return [brief(summarize(r.state(), r.history)) for r in self.experiments.values()]

    async def create(self, body: Any) -> dict[str, Any]:
        """``POST /v1/experiments``: a new experiment from the same keys as a config table."""
        if not isinstance(body, dict):
            raise BadRequest("The body must be a JSON object with the experiment's settings.")
        table = dict(body)
        name = table.pop("name", None)
        if not isinstance(name, str):
            raise BadRequest("The body needs `name` (the experiment's name).", param="name")
        if name in self.experiments:
            raise Conflict(f"An experiment named `{name}` exists already.", param="name")
        try:
            settings = parse(name, table)
            check_models([*(r.settings for r in self.experiments.values()), settings])
        except SettingsError as exc:
            raise BadRequest(str(exc)) from exc
        self._check_routable(settings)
        if self.store is not None:
            row = await self._write(self.store.ensure(name, "api", settings.as_dict()))
            run = self._add(settings, "api")
            self._apply_row(run, row, initial=True)
        else:
            run = self._add(settings, "api")
        self.install()
        return await self.summary(name)

    def _check_routable(self, s: ExperimentSettings) -> None:
        from fareway.types import ChatRequest, Message, TextPart

        probe = ChatRequest(model=s.model, messages=[Message("user", [TextPart("ping")])])
        for key in ("control", "challenger", "judge"):
            try:
                self.gateway.resolver.decide(probe, model=getattr(s, key))
            except NotFound as exc:
                raise BadRequest(f"`{key}`: {exc.message}", param=key) from exc

    async def set_status(self, name: str, action: str, to: str | None = None) -> dict[str, Any]:
        """``pause``, ``resume``, ``stop`` or ``promote`` (fareway.experiments.control)."""
        run = self.get(name)
        status, promoted_to = transition(
            run.settings, run.status, run.promoted_to, action, run.history.tally, to
        )
        if self.store is not None:
            await self._write(self.store.set_status(name, status, promoted_to))
        run.status, run.promoted_to = status, promoted_to
        log.info("experiment %s: %s (status %s)", name, action, status)
        return await self.summary(name)


def fingerprint(settings: ExperimentSettings) -> str:
    """A short digest of the experiment's definition (what every gateway must agree on)."""
    import hashlib

    import orjson

    text = orjson.dumps(settings.as_dict(), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def as_verdict(b: Background, control_first: bool) -> Verdict:
    """One order's verdict from its judge call (an error when the call failed)."""
    if b.response is None:
        return "error"
    return as_variant(read_verdict(b.response.text()), control_first)


def build(gateway: Gateway, store: ExperimentStore | None) -> ExperimentManager:
    """The manager for ``gateway``'s config, started and closed with the gateway."""
    sh = gateway.config.shared
    counters = (
        RedisCounters(sh.redis_url, prefix=sh.prefix, timeout=sh.timeout)
        if sh.experiments == "redis"
        else None
    )
    mgr = ExperimentManager(gateway, store, dict(gateway.config.experiments), counters=counters)
    for run in mgr.experiments.values():
        mgr._check_routable(run.settings)
        for w in run.warnings:
            log.warning("experiment %s: %s", run.settings.name, w)
    gateway.on_start.append(mgr.start)
    gateway.on_close.insert(0, mgr.close)
    return mgr
