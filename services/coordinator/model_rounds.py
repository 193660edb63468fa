"""One model's rounds on the coordinator: the shell around ``flcore.rounds``.

It feeds events (admissions, partials, ticks) to the pure state machine and
carries out its decisions: publish a plan, make the next version
(``flcore.close``), abandon with a reason, open the next round. Exporting,
scoring and storing a version block, so they run in a worker thread
(``closing.keep_version``) while the loop goes on; the round stays closing
until its version is stored, and is abandoned if that fails.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import structlog

from flcore import master
from flcore import rounds as core
from flcore.close import BaseVersion, NextVersion, next_version
from flcore.errors import EmptyAggregate, InvalidParameter, NonFiniteVersion, SizeMismatch
from flcore.partial_check import check_partial, partial_bounds
from flcore.server_opt import ServerOptState
from flstore import ModelStore, VersionRecord
from modelzoo import ParamManifest
from schemas import ModelVersion, PartialAggregate, RoundPlan
from services.coordinator import plans
from services.coordinator.closing import NotKept, keep_version
from services.coordinator.config import RoundSettings
from services.coordinator.evaluation import Evaluator
from services.coordinator.population import Population
from services.coordinator.summary import RoundSummary

log = structlog.get_logger("coordinator")


class Outbox(Protocol):
    """Where the coordinator's decisions go (Kafka in production, memory in tests)."""

    async def plan(self, plan: RoundPlan) -> None:
        """Publish the round plan of a model (compacted, latest wins)."""

    async def version(self, version: ModelVersion) -> None:
        """Announce a new model version."""

    async def audit(self, kind: str, model: str, round_id: int, reason: str, detail: str) -> None:
        """Record a round event."""


@dataclass
class ModelRounds:
    """Round lifecycle, master aggregation and registry updates of one model."""

    model: str
    hospitals: tuple[str, ...]
    settings: RoundSettings
    manifest: ParamManifest
    store: ModelStore
    evaluator: Evaluator
    outbox: Outbox
    rng: np.random.Generator
    artifact_digest: str
    population: Mapping[str, int] = field(default_factory=dict)
    executor: Executor | None = None  # where closes export, score and store (None: the loop's)
    # Bytes every device receives before it sees the next plan: announced, not yet followed
    # by a round (the app sets the artifacts and version it announces at start).
    broadcast_bytes: int = 0
    version: int = 0
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    opt_state: ServerOptState = field(default_factory=ServerOptState)
    state: core.RoundState | None = None
    next_round_id: int = 1
    rounds_run: int = 0
    summary: RoundSummary | None = None
    history: list[RoundSummary] = field(default_factory=list)
    close_failures: dict[str, int] = field(default_factory=dict)  # by stage
    _closing: asyncio.Task[None] | None = None
    _partials: dict[str, PartialAggregate] = field(default_factory=dict)
    _admitted: set[tuple[str, str]] = field(default_factory=set)
    _probability: float = 1.0  # the open round's admission probability
    _broadcast_ms: int = 0  # the part of the open round's window given to broadcasts

    def __post_init__(self) -> None:
        self._optimizer = self.settings.make_optimizer()
        self.learnt = Population(self.hospitals, self.population, self.settings)

    @property
    def finished(self) -> bool:
        """True once the configured number of rounds has run."""
        return self.settings.rounds > 0 and self.rounds_run >= self.settings.rounds

    def version_message(self, record: VersionRecord) -> ModelVersion:
        """The current version (``record`` and the current weights) as the wire message."""
        return plans.version_message(record, self.weights, self.manifest, self.artifact_digest)

    @property
    def update_bytes(self) -> int:
        """Bytes of one device update (float32 weights), and of a version's weights."""
        return 4 * self.manifest.total_size

    def reported_hospitals(self) -> tuple[str, ...]:
        """Hospitals whose partial for the open round has arrived."""
        return tuple(sorted(self._partials))

    def note_checkin(self, hospital: str, device: str) -> None:
        """Count a device seen checking in (drives the next round's goals and probability)."""
        self.learnt.note(hospital, device)

    # -- opening ------------------------------------------------------------

    async def open_round(self, now_ms: int) -> None:
        """Open the next round: publish its plan."""
        expected = self.learnt.expected()
        goals, probability = plans.round_goals(expected, self.settings)
        timing = plans.timing(
            expected,
            goals,
            self.settings,
            self.learnt.checkins_per_s,
            broadcast_bytes=self.broadcast_bytes,
            update_bytes=self.update_bytes,
        )
        self.broadcast_bytes, self._broadcast_ms = 0, timing.broadcast_ms
        self.learnt.planned(goals)
        self._probability = probability
        round_id = self.next_round_id
        self.next_round_id += 1
        terms = plans.round_terms(
            self.model, round_id, self.version, goals, self.settings, now_ms, timing, expected
        )
        self.state = core.open_round(terms)
        self._partials.clear()
        self._admitted.clear()
        self.summary = RoundSummary(
            self.model, round_id, self.version, opened_at_ms=now_ms, goals=dict(goals)
        )
        await self.outbox.plan(self._wire_plan("selecting", probability, now_ms))
        log.info(
            "round.opened",
            model=self.model,
            round=round_id,
            base_version=self.version,
            goals=goals,
            admission_probability=round(probability, 4),
            selection_window_ms=timing.selection_window_ms,
            round_timeout_ms=timing.round_timeout_ms,
            broadcast_ms=timing.broadcast_ms,
        )

    def resume(self, plan: RoundPlan) -> bool:
        """Take up the round ``plan`` shows open when the previous coordinator stopped.

        Returns False when there is none to take up: the plan ended, or its
        version was already stored (the coordinator stopped before saying so).
        """
        self.next_round_id = max(self.next_round_id, plan.round_id + 1)
        if plan.state not in ("selecting", "training") or plan.base_version != self.version:
            return False
        try:
            terms = plans.restored_terms(plan, self.settings)
        except (InvalidParameter, ValueError) as e:
            log.warning("round.not_resumed", model=self.model, round=plan.round_id, error=str(e))
            return False
        state = core.open_round(terms)
        self.state = (
            state if plan.state == "selecting" else replace(state, phase=core.Phase.TRAINING)
        )
        self.summary = RoundSummary(
            self.model,
            plan.round_id,
            plan.base_version,
            opened_at_ms=plan.opened_at_ms,
            goals=dict(terms.goals),
        )
        self.learnt.last_goals = dict(terms.goals)
        log.info("round.resumed", model=self.model, round=plan.round_id, state=plan.state)
        return True

    def _wire_plan(
        self, state: str, probability: float, now_ms: int, reason: str = ""
    ) -> RoundPlan:
        assert self.state is not None
        opened_at_ms = self.summary.opened_at_ms if self.summary else now_ms
        terms, settings = self.state.plan, self.settings
        return plans.wire_plan(terms, settings, state, probability, opened_at_ms, reason)

    # -- events -------------------------------------------------------------

    async def on_admitted(self, round_id: int, hospital: str, device: str, now_ms: int) -> None:
        """A selector admitted a device of ``hospital`` to ``round_id`` (counted once)."""
        if self.summary is None or self.summary.round_id != round_id:
            return
        if (hospital, device) in self._admitted:
            return  # a repeated check-in (QoS 1 redelivery, retry) is admitted again
        self._admitted.add((hospital, device))
        self.summary.admitted[hospital] = self.summary.admitted.get(hospital, 0) + 1
        await self._advance(core.DevicesAdmitted(round_id, hospital, 1), now_ms)

    async def on_partial(self, partial: PartialAggregate, now_ms: int) -> None:
        """A hospital aggregator published its partial aggregate."""
        if self.state is None or partial.round_id != self.state.plan.round_id:
            log.info(
                "partial.ignored",
                model=self.model,
                round=partial.round_id,
                hospital=partial.hospital_id,
                reason="not the open round",
            )
            return
        h = partial.hospital_id
        fresh = self.state.is_open and h in self.state.plan.goals and h not in self.state.partials
        if fresh and not await self._admissible(partial):
            # Reported, with nothing usable: the round goes on with the others.
            await self._advance(core.PartialReceived(partial.round_id, h, 0, 0.0), now_ms)
            return
        if fresh:
            self._partials[h] = partial
        event = core.PartialReceived(
            partial.round_id, h, partial.num_updates, float(partial.num_examples)
        )
        await self._advance(event, now_ms)

    async def _admissible(self, partial: PartialAggregate) -> bool:
        """Check a partial against the plan before it may be combined; audit a refusal."""
        assert self.state is not None and self.summary is not None
        h, s = partial.hospital_id, self.settings
        bounds = partial_bounds(
            self.manifest.total_size,
            self.state.plan.goals[h],
            self.summary.admitted.get(h, 0),
            s.over_selection,
            s.max_examples_per_update,
        )
        found = check_partial(_partial_sum(partial), bounds)
        if found is None:
            return True
        self.summary.refused[h] = f"{found.reason}: {found.detail}"
        log.warning(
            "partial.refused",
            model=self.model,
            round=partial.round_id,
            hospital=h,
            reason=str(found.reason),
            detail=found.detail,
        )
        await self.outbox.audit(
            "partial.refused", self.model, partial.round_id, found.reason, f"{h}: {found.detail}"
        )
        return False

    async def on_tick(self, now_ms: int) -> None:
        """Let deadlines pass; open the next round when none is open."""
        self._reap()
        if self.state is None or not self.state.is_open:
            if not self.finished and (
                self.state is None or self.state.phase in (core.Phase.DONE, core.Phase.ABANDONED)
            ):
                await self.open_round(now_ms)
            return
        await self._advance(core.Tick(now_ms), now_ms)

    async def _advance(self, event: core.Event, now_ms: int) -> None:
        if self.state is None:
            return
        self.state, decisions = core.advance(self.state, event)
        for decision in decisions:
            if isinstance(decision, core.StopSelecting):
                self._selection_ended(decision)
                await self.outbox.plan(self._wire_plan("training", 0.0, now_ms, decision.reason))
                log.info(
                    "round.selection_closed",
                    model=self.model,
                    round=decision.round_id,
                    reason=decision.reason,
                )
            elif isinstance(decision, core.CloseRound):
                await self._close(decision, now_ms)
            elif isinstance(decision, core.AbandonRound):
                await self._abandon(decision.reason, now_ms)
            else:
                log.debug("round.event_ignored", model=self.model, reason=decision.reason)

    def _selection_ended(self, decision: core.StopSelecting) -> None:
        if self.state is None or self.summary is None:
            return
        # The broadcast part of the window answers nobody: the rate is of the rest.
        window = self.state.plan.selection_deadline_ms - self.summary.opened_at_ms
        window -= self._broadcast_ms
        admitted = sum(self.summary.admitted.values())
        met = decision.reason == "admission targets reached"
        self.learnt.selection_ended(admitted, self._probability, window, targets_met=met)

    # -- closing ------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True while a closed round's version is being exported, scored and stored."""
        return self._closing is not None and not self._closing.done()

    async def settle(self) -> None:
        """Wait for a close in flight; re-raise what it could not handle (a bus failure)."""
        if self._closing is not None:
            await asyncio.wait([self._closing])
        self._reap()

    def _reap(self) -> None:
        task = self._closing
        if task is not None and task.done():
            self._closing = None
            task.result()

    async def _close(self, decision: core.CloseRound, now_ms: int) -> None:
        reporting = [
            self._partials[p.hospital] for p in decision.partials if p.hospital in self._partials
        ]
        partials = [_partial_sum(p) for p in reporting]
        base = BaseVersion(self.model, self.version, self.weights, self.opt_state)
        s = self.settings
        try:
            nxt = next_version(
                base,
                partials,
                self._optimizer,
                round_id=decision.round_id,
                created_at_ms=now_ms,
                noise_multiplier=s.noise_multiplier,
                clip_norm=s.clip_norm,
                rng=self.rng,
                rule=s.aggregation,
                trim_fraction=s.trim_fraction,
            )
        except (EmptyAggregate, SizeMismatch, NonFiniteVersion) as e:
            await self._abandon(str(e), now_ms)
            return
        # Export, scoring and storing take a while: they run in a worker thread while
        # the loop goes on, and the round stays closing until the version is stored.
        self._closing = asyncio.create_task(
            self._keep(nxt, decision.reason, now_ms), name=f"close-{self.model}-r{nxt.round_id}"
        )

    async def _keep(self, nxt: NextVersion, reason: str, now_ms: int) -> None:
        keep = functools.partial(keep_version, nxt, self.manifest, self.store, self.evaluator)
        kept = await asyncio.get_running_loop().run_in_executor(self.executor, keep)
        if isinstance(kept, NotKept):
            self.close_failures[kept.stage] = self.close_failures.get(kept.stage, 0) + 1
            log.error(
                "round.close_failed",
                model=self.model,
                round=nxt.round_id,
                version=nxt.version,
                stage=kept.stage,
                error=repr(kept.error),
                exc_info=kept.error,
            )
            await self._abandon(kept.reason, now_ms)
            return
        record = kept.record
        self.version, self.weights, self.opt_state = nxt.version, nxt.weights, nxt.server_state
        assert self.state is not None and self.summary is not None
        try:
            self.broadcast_bytes += self.update_bytes  # the new version goes to every device
            await self.outbox.version(self.version_message(record))
            await self.outbox.plan(self._wire_plan("done", 0.0, now_ms, reason))
        finally:  # the version is stored: the round is done even if announcing it failed
            self.state, _ = core.advance(self.state, core.RoundCommitted(nxt.round_id, nxt.version))
            summary = self.summary
            summary.outcome, summary.reason, summary.new_version = "done", reason, nxt.version
            summary.examples, summary.metrics = nxt.num_examples, record.metrics
            summary.train_loss = record.metrics["train_loss"]
            self._finish(summary, now_ms)
        log.info(
            "round.closed",
            model=self.model,
            round=record.round_id,
            version=record.version,
            reason=reason,
            examples=nxt.num_examples,
            **{k: round(v, 4) for k, v in record.metrics.items()},
        )

    async def _abandon(self, reason: str, now_ms: int) -> None:
        assert self.state is not None and self.summary is not None
        if self.summary.refused:
            refused = "; ".join(f"{h}: {why}" for h, why in sorted(self.summary.refused.items()))
            reason = f"{reason}; partials refused: {refused}"
        if self.state.is_open or self.state.phase is core.Phase.CLOSING:
            self.state, _ = core.advance(
                self.state, core.AbortRound(self.state.plan.round_id, reason)
            )
        await self.outbox.plan(self._wire_plan("abandoned", 0.0, now_ms, reason))
        await self.outbox.audit("round.abandoned", self.model, self.summary.round_id, reason, "")
        self.summary.outcome, self.summary.reason = "abandoned", reason
        self._finish(self.summary, now_ms)
        log.warning("round.abandoned", model=self.model, round=self.summary.round_id, reason=reason)

    def _finish(self, summary: RoundSummary, now_ms: int) -> None:
        summary.closed_at_ms = now_ms
        for h, p in self._partials.items():
            summary.reported[h] = p.num_updates
            summary.rejected[h] = p.rejected
            summary.train_seconds += p.train_seconds_sum
        self.history.append(summary)
        self.rounds_run += 1


def _partial_sum(p: PartialAggregate) -> master.PartialSum:
    return master.PartialSum(
        p.hospital_id, p.tensors.flat, p.num_examples, p.num_updates, p.loss_sum
    )
