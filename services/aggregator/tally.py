"""Per-round bookkeeping of one hospital: plans in, fold updates, decide when to publish.

Pure (no bus, clock or logger): the aggregator feeds it plans, model-version
manifests, updates and ticks, and carries out the ``PublishPartial`` decisions
of ``flcore.hospital_round`` it hands back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flbus.port import TopicPartition
from flcore.aggregation import FOLD_BATCH, StreamingWeightedSum
from flcore.examples import ExampleHistory, plan_max_examples
from flcore.hospital_round import (
    HospitalRound,
    HospitalTick,
    PublishPartial,
    UpdateAccepted,
    advance_hospital,
)
from flcore.rejection import Rejection, RejectReason
from flcore.robust import UpdateStack, is_robust, stack_bytes
from flcore.validation import RoundFacts, UpdateClaims, validate_update
from schemas import ModelUpdate, PartialAggregate, RoundPlan, Tensors, TensorSpec

Manifest = tuple[TensorSpec, ...]
ENDED_STATES = frozenset({"done", "abandoned"})


@dataclass(slots=True)
class Tally:
    """The open round of one model at this hospital: the running sum and its counters."""

    plan: RoundPlan
    state: HospitalRound
    manifest: Manifest | None
    acc: StreamingWeightedSum | None = None  # fedavg: the running weighted sum
    stack: UpdateStack | None = None  # a robust rule: every update, at most the goal's
    seen: set[str] = field(default_factory=set)
    examples: int = 0
    loss_sum: float = 0.0
    train_seconds_sum: float = 0.0
    rejected: int = 0
    dropped: int = 0
    clamped: int = 0  # updates whose example count was clamped to the device's history
    floors: dict[TopicPartition, int] = field(default_factory=dict)

    def hold(self, tp: TopicPartition, offset: int) -> None:
        """Keep offsets from ``offset`` on uncommitted until this round's partial is out."""
        self.floors[tp] = min(offset, self.floors.get(tp, offset))

    def partial(self, hospital: str) -> PartialAggregate:
        """The PartialAggregate of this round in the model's manifest: the weighted sum, or
        with a robust rule ``num_examples`` times the rule's estimate (docs/protocol.md)."""
        manifest = self.manifest or ()
        size = sum(s.size for s in manifest)
        flat: np.ndarray = np.zeros(size, np.float32)
        if self.acc is not None:
            flat = self.acc.weighted_sum()
        elif self.stack is not None and self.stack.count:
            rule, trim = self.plan.aggregation, self.plan.trim_fraction
            flat = self.stack.aggregate(rule, trim).astype(np.float64) * self.examples
        return PartialAggregate(
            model=self.plan.model,
            round_id=self.plan.round_id,
            base_version=self.plan.base_version,
            hospital_id=hospital,
            num_updates=self.state.accepted,
            num_examples=self.examples,
            loss_sum=self.loss_sum,
            train_seconds_sum=self.train_seconds_sum,
            rejected=self.rejected,
            tensors=Tensors(manifest, flat.astype(np.float32)),
        )


Decision = tuple[Tally, PublishPartial]


class RoundBook:
    """Latest plan per model, known manifests, rounds already published, open tallies."""

    def __init__(
        self,
        hospital: str,
        closed: set[tuple[str, int]] | None = None,
        max_examples: int = 0,
        *,
        max_robust_bytes: int = 0,
        history: ExampleHistory | None = None,
    ) -> None:
        self.hospital = hospital
        self.max_examples = max_examples  # examples one update may claim (0: no bound)
        self.max_robust_bytes = max_robust_bytes  # what a robust round may hold (0: no bound)
        self.history = history  # each device's last example count (None: not checked)
        self.refused: list[tuple[RoundPlan, str]] = []  # plans not opened here, and why
        self.plans: dict[str, RoundPlan] = {}
        self.manifests: dict[tuple[str, int], Manifest] = {}
        self.closed: set[tuple[str, int]] = set(closed or ())
        self.open: dict[str, Tally] = {}
        self.closing: list[Tally] = []  # decided to publish, partial not yet out

    def on_plan(self, plan: RoundPlan) -> list[Decision]:
        """Record a plan; open its round here, and end an older one the plan supersedes."""
        known = self.plans.get(plan.model)
        if known is not None and plan.round_id < known.round_id:
            return []  # a stale plan (replayed history); the latest one rules
        self.plans[plan.model] = plan
        decisions: list[Decision] = []
        tally = self.open.get(plan.model)
        ends = tally is not None and (
            tally.plan.round_id < plan.round_id or plan.state in ENDED_STATES
        )
        if tally is not None and ends and tally.floors:
            decisions.append(self._force(tally))  # it consumed records: publish, then commit
        elif tally is not None and ends:  # nothing to tell a coordinator that moved on
            del self.open[plan.model]
            self.closed.add((tally.plan.model, tally.plan.round_id))
        elif tally is not None:
            tally.plan = plan
        if plan.model not in self.open and self._opens(plan):
            goal = plan.targets[plan.hospitals.index(self.hospital)]
            state = HospitalRound(plan.model, self.hospital, plan.round_id, goal, plan.deadline_ms)
            self.open[plan.model] = Tally(plan, state, self._manifest(plan))
            self._bound_robust(self.open[plan.model])
        return decisions

    def _bound_robust(self, tally: Tally) -> None:
        """Refuse a robust round whose updates would hold more than ``max_robust_bytes``."""
        if tally.manifest is None or not is_robust(tally.plan.aggregation):
            return
        size = sum(s.size for s in tally.manifest)
        need = stack_bytes(tally.state.goal, size)
        if self.max_robust_bytes and need > self.max_robust_bytes:
            why = (
                f"{tally.plan.aggregation} keeps {tally.state.goal} updates x {size} params x 4 "
                f"= {need} bytes, over the aggregator's max_robust_bytes {self.max_robust_bytes}"
            )
            del self.open[tally.plan.model]
            self.closed.add((tally.plan.model, tally.plan.round_id))
            self.refused.append((tally.plan, why))

    def _opens(self, plan: RoundPlan) -> bool:
        return (
            plan.state not in ENDED_STATES
            and (plan.model, plan.round_id) not in self.closed
            and self.hospital in plan.hospitals
            and plan.targets[plan.hospitals.index(self.hospital)] > 0
        )

    def _manifest(self, plan: RoundPlan) -> Manifest | None:
        return self.manifests.get((plan.model, plan.base_version))

    def _force(self, tally: Tally) -> Decision:
        decision = self._advance(tally, HospitalTick(tally.state.deadline_ms))
        assert decision is not None  # an open round always publishes at its deadline
        return decision

    def _advance(self, tally: Tally, event: UpdateAccepted | HospitalTick) -> Decision | None:
        tally.state, decision = advance_hospital(tally.state, event)
        if decision is None:
            return None
        del self.open[tally.plan.model]
        self.closing.append(tally)
        return tally, decision

    def on_manifest(self, model: str, version: int, manifest: Manifest) -> None:
        """Remember the tensor layout of a model version (to shape-check updates)."""
        self.manifests[(model, version)] = manifest
        tally = self.open.get(model)
        if tally is not None and tally.manifest is None and tally.plan.base_version == version:
            tally.manifest = manifest
            self._bound_robust(tally)

    def check(self, update: ModelUpdate, *, now_ms: int, secret: bytes) -> Rejection | None:
        """Validate ``update`` against the round it claims (token first, then the round)."""
        tally = self.open.get(update.model)
        plan = tally.plan if tally is not None else self.plans.get(update.model)
        manifest = tally.manifest if tally is not None else None
        size = update.tensors.flat.size if manifest is None else sum(s.size for s in manifest)
        facts = RoundFacts(
            model=update.model,
            hospital_id=self.hospital,
            round_id=plan.round_id if plan is not None else -1,
            base_version=plan.base_version if plan is not None else -1,
            is_open=tally is not None,
            expected_size=size,
            norm_bound=plan.clip_norm if plan is not None else 0.0,
            max_examples=plan_max_examples(plan.max_steps, plan.batch_size, self.max_examples)
            if plan is not None
            else self.max_examples,
            layer_sizes=tuple((s.name, s.size) for s in manifest or ()),
        )
        claims = UpdateClaims(
            device_id=update.device_id,
            hospital_id=update.hospital_id,
            model=update.model,
            round_id=update.round_id,
            base_version=update.base_version,
            num_examples=update.num_examples,
            token=bytes(update.token),
            delta=update.tensors.flat,
        )
        seen = tally.seen if tally is not None else ()
        found = validate_update(claims, facts, seen, now_ms=now_ms, secret=secret)
        if found is not None:
            return found
        if manifest is None:
            why = f"version {update.base_version} of {update.model!r} not seen on model-versions"
            return Rejection(RejectReason.WRONG_BASE_VERSION, why)
        if update.tensors.manifest != manifest:
            return Rejection(RejectReason.BAD_SHAPE, "tensor names/shapes differ from the model's")
        return None

    def accept(self, update: ModelUpdate) -> Decision | None:
        """Fold a validated update into its round's sum; return a decision when it is time."""
        tally = self.open[update.model]
        weight, clamped = update.num_examples, False
        if self.history is not None:
            weight, clamped = self.history.weigh(
                (update.model, update.device_id), update.num_examples
            )
        tally.clamped += clamped
        flat = update.tensors.flat
        if is_robust(tally.plan.aggregation):
            if tally.stack is None:
                tally.stack = UpdateStack(tally.state.goal, flat.size)
            tally.stack.add(flat)
        else:
            if tally.acc is None:
                tally.acc = StreamingWeightedSum(flat.size, FOLD_BATCH)  # deltas are never modified
            tally.acc.add(flat, weight)
        tally.seen.add(update.device_id)
        tally.examples += weight
        tally.loss_sum += weight * update.train_loss
        tally.train_seconds_sum += update.train_seconds
        return self._advance(tally, UpdateAccepted(update.round_id, float(weight)))

    def tick(self, now_ms: int) -> list[Decision]:
        """Advance every open round's clock; return the rounds whose deadline passed."""
        out: list[Decision] = []
        for tally in list(self.open.values()):
            decision = self._advance(tally, HospitalTick(now_ms))
            if decision is not None:
                out.append(decision)
        return out

    def published(self, tally: Tally) -> None:
        """Mark a round closed once its partial is durably out."""
        self.closed.add((tally.plan.model, tally.plan.round_id))
        self.closing.remove(tally)

    def floors(self) -> list[dict[TopicPartition, int]]:
        """Offsets held by rounds whose partial is not yet published."""
        return [t.floors for t in (*self.open.values(), *self.closing)]
