"""One model's rounds on the coordinator: the shell around ``flcore.rounds``.

It feeds events (admissions, partials, ticks) to the pure state machine and
carries out its decisions: publish a plan, combine partials into the next
version, abandon with a reason, open the next round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

from flcore import master
from flcore import rounds as core
from flcore.admission import admission_probability
from flcore.errors import EmptyAggregate, SizeMismatch
from flcore.server_opt import ServerOptState
from flstore import ModelStore, VersionRecord
from modelzoo import ParamManifest
from schemas import ModelVersion, PartialAggregate, RoundPlan, Tensors, TensorSpec
from services.coordinator.config import RoundSettings
from services.coordinator.evaluation import Evaluator, onnx_model_bytes

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
class RoundSummary:
    """What happened in one round, for progress displays and reports."""

    model: str
    round_id: int
    base_version: int
    outcome: str = "open"  # open, done, abandoned
    reason: str = ""
    new_version: int | None = None
    opened_at_ms: int = 0
    closed_at_ms: int = 0
    goals: dict[str, int] = field(default_factory=dict)
    admitted: dict[str, int] = field(default_factory=dict)
    reported: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    examples: int = 0
    train_seconds: float = 0.0
    train_loss: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def wall_seconds(self) -> float:
        """Seconds from opening to closing."""
        return max(0, self.closed_at_ms - self.opened_at_ms) / 1000


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
    version: int = 0
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    opt_state: ServerOptState = field(default_factory=ServerOptState)
    state: core.RoundState | None = None
    next_round_id: int = 1
    rounds_run: int = 0
    summary: RoundSummary | None = None
    history: list[RoundSummary] = field(default_factory=list)
    _partials: dict[str, PartialAggregate] = field(default_factory=dict)
    _seen_checkins: dict[str, set[str]] = field(default_factory=dict)
    _admitted: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._optimizer = self.settings.make_optimizer()

    @property
    def finished(self) -> bool:
        """True once the configured number of rounds has run."""
        return self.settings.rounds > 0 and self.rounds_run >= self.settings.rounds

    def named_weights(self) -> dict[str, np.ndarray]:
        """Current weights by parameter name."""
        return dict(Tensors(self._specs(), self.weights).to_dict())

    def _specs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(e.name, tuple(e.shape)) for e in self.manifest.entries)

    def version_message(self, now_ms: int, record: VersionRecord) -> ModelVersion:
        """The current version as the wire message."""
        names = tuple(sorted(record.metrics))
        return ModelVersion(
            model=self.model,
            version=record.version,
            parent_version=record.parent_version,
            round_id=record.round_id,
            created_at_ms=record.created_at_ms,
            metric_names=names,
            metric_values=tuple(float(record.metrics[n]) for n in names),
            artifact_digest=self.artifact_digest,
            tensors=Tensors(self._specs(), self.weights),
        )

    def reported_hospitals(self) -> tuple[str, ...]:
        """Hospitals whose partial for the open round has arrived."""
        return tuple(sorted(self._partials))

    def note_checkin(self, hospital: str, device: str) -> None:
        """Count a device seen checking in (drives the next round's admission probability)."""
        self._seen_checkins.setdefault(hospital, set()).add(device)

    # -- opening ------------------------------------------------------------

    def _goals(self) -> tuple[dict[str, int], float]:
        expected: dict[str, int] = {}
        for h in self.hospitals:
            seen = len(self._seen_checkins.get(h, ()))
            expected[h] = max(self.population.get(h, 0), seen)
        goals = {h: max(1, math.ceil(self.settings.fraction * n)) for h, n in expected.items()}
        total_expected = sum(expected.values())
        if total_expected == 0:
            return goals, 1.0
        wanted = sum(math.ceil(g * self.settings.over_selection) for g in goals.values())
        return goals, admission_probability(wanted, total_expected, over_selection=1.0)

    async def open_round(self, now_ms: int) -> None:
        """Open the next round: publish its plan."""
        s = self.settings
        goals, probability = self._goals()
        self._seen_checkins.clear()
        round_id = self.next_round_id
        self.next_round_id += 1
        plan = core.RoundTerms(
            model=self.model,
            round_id=round_id,
            base_version=self.version,
            goals=goals,
            selection_deadline_ms=now_ms + s.selection_window_ms,
            deadline_ms=now_ms + s.round_timeout_ms,
            close_grace_ms=s.close_grace_ms,
            over_selection=s.over_selection,
            min_hospital_fraction=s.min_hospital_fraction,
            min_update_fraction=s.min_update_fraction,
        )
        self.state = core.open_round(plan)
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
        )

    def _wire_plan(
        self, state: str, probability: float, now_ms: int, reason: str = ""
    ) -> RoundPlan:
        assert self.state is not None
        p, s = self.state.plan, self.settings
        hospitals = tuple(sorted(p.goals))
        return RoundPlan(
            model=self.model,
            round_id=p.round_id,
            base_version=p.base_version,
            state=state,
            local_epochs=s.local_epochs,
            max_steps=s.max_steps,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            clip_norm=s.clip_norm,
            noise_multiplier=s.noise_multiplier,
            hospitals=hospitals,
            targets=tuple(p.goals[h] for h in hospitals),
            admission_probability=probability,
            over_selection=p.over_selection,
            min_fraction=p.min_update_fraction,
            opened_at_ms=self.summary.opened_at_ms if self.summary else now_ms,
            deadline_ms=p.deadline_ms,
            reason=reason,
        )

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
        if partial.hospital_id not in self._partials:
            self._partials[partial.hospital_id] = partial
        event = core.PartialReceived(
            partial.round_id, partial.hospital_id, partial.num_updates, float(partial.num_examples)
        )
        await self._advance(event, now_ms)

    async def on_tick(self, now_ms: int) -> None:
        """Let deadlines pass; open the next round when none is open."""
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

    # -- closing ------------------------------------------------------------

    async def _close(self, decision: core.CloseRound, now_ms: int) -> None:
        reporting = [
            self._partials[p.hospital] for p in decision.partials if p.hospital in self._partials
        ]
        s = self.settings
        try:
            result = master.combine(
                [
                    master.PartialSum(p.hospital_id, p.tensors.flat, p.num_examples, p.num_updates)
                    for p in reporting
                ],
                self.weights,
                self._optimizer,
                self.opt_state,
                noise_multiplier=s.noise_multiplier,
                clip_norm=s.clip_norm,
                rng=self.rng,
            )
        except (EmptyAggregate, SizeMismatch) as e:
            await self._abandon(str(e), now_ms)
            return
        new_weights, self.opt_state, examples = result.weights, result.state, result.num_examples
        assert self.state is not None and self.summary is not None
        parent, self.version, self.weights = self.version, self.version + 1, new_weights
        named = self.named_weights()
        onnx_model = onnx_model_bytes(self.model, named)
        metrics = self.evaluator.evaluate(self.model, onnx_model)
        loss_sum = sum(p.loss_sum for p in reporting if p.num_updates > 0)
        metrics["train_loss"] = loss_sum / examples
        record = VersionRecord(
            self.model, self.version, parent, self.state.plan.round_id, now_ms, metrics
        )
        self.store.put(record, named, onnx_model)
        # A restarted coordinator resumes FedAdam/FedYogi moments instead of resetting them.
        self.store.put_server_state(self.model, self.version, self.opt_state.to_arrays())
        await self.outbox.version(self.version_message(now_ms, record))
        self.state, _ = core.advance(self.state, core.RoundCommitted(record.round_id, self.version))
        await self.outbox.plan(self._wire_plan("done", 0.0, now_ms, decision.reason))
        summary = self.summary
        summary.outcome, summary.reason, summary.new_version = "done", decision.reason, self.version
        summary.examples, summary.metrics = examples, metrics
        summary.train_loss = metrics["train_loss"]
        self._finish(summary, now_ms)
        log.info(
            "round.closed",
            model=self.model,
            round=record.round_id,
            version=self.version,
            reason=decision.reason,
            examples=examples,
            **{k: round(v, 4) for k, v in metrics.items()},
        )

    async def _abandon(self, reason: str, now_ms: int) -> None:
        assert self.state is not None and self.summary is not None
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
