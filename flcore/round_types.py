"""Data of the coordinator's round state machine: plan, events, decisions and state.

The transitions live in ``flcore.rounds``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from flcore.errors import InvalidParameter


class Phase(StrEnum):
    """Lifecycle phase of a round."""

    SELECTING = "selecting"
    TRAINING = "training"
    CLOSING = "closing"
    DONE = "done"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class RoundTerms:
    """The terms a round is opened on: goals (hospital -> updates wanted), deadlines, quorum.

    The coordinator's own view; devices and services see the wire message
    ``schemas.RoundPlan``, built from these terms and the round's hyper-parameters.
    """

    model: str
    round_id: int
    base_version: int
    goals: Mapping[str, int]
    selection_deadline_ms: int
    deadline_ms: int
    close_grace_ms: int = 5_000
    over_selection: float = 1.3
    min_hospital_fraction: float = 0.5
    min_update_fraction: float = 0.5
    # Devices each hospital is expected to have (empty: unknown). Admitting more than a
    # hospital has is impossible, so its target is capped there: with fraction 1 the
    # over-selected target (1.3 x every device) kept every window open to its end.
    expected: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.goals:
            raise InvalidParameter("goals: a round needs at least one hospital")
        for hospital, goal in self.goals.items():
            if goal <= 0:
                raise InvalidParameter(f"goals[{hospital!r}] must be > 0, got {goal}")
        if not self.selection_deadline_ms <= self.deadline_ms:
            raise InvalidParameter("selection_deadline_ms must not be after deadline_ms")
        if self.close_grace_ms < 0:
            raise InvalidParameter(f"close_grace_ms must be >= 0, got {self.close_grace_ms}")
        if self.over_selection < 1:
            raise InvalidParameter(f"over_selection must be >= 1, got {self.over_selection}")
        for name in ("min_hospital_fraction", "min_update_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise InvalidParameter(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def admission_target(self, hospital: str) -> int:
        """Devices to admit at ``hospital``: its goal times the over-selection factor.

        At most the devices the hospital is expected to have, when that is known
        (never below its goal).
        """
        target = math.ceil(self.goals[hospital] * self.over_selection)
        cap = self.expected.get(hospital, 0)
        return max(self.goals[hospital], min(target, cap)) if cap > 0 else target

    @property
    def close_at_ms(self) -> int:
        """When the coordinator stops waiting for partials."""
        return self.deadline_ms + self.close_grace_ms

    @property
    def min_hospitals(self) -> int:
        """Hospitals with at least one update needed to close rather than abandon."""
        return max(1, math.ceil(self.min_hospital_fraction * len(self.goals) - 1e-9))

    @property
    def min_updates(self) -> int:
        """Updates (over all hospitals) needed to close rather than abandon."""
        return max(1, math.ceil(self.min_update_fraction * sum(self.goals.values()) - 1e-9))


@dataclass(frozen=True, slots=True)
class PartialReport:
    """A hospital's partial aggregate as the state machine sees it (no arrays)."""

    hospital: str
    num_updates: int
    total_weight: float


# Events
@dataclass(frozen=True, slots=True)
class Tick:
    """The clock reached ``now_ms``."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class DevicesAdmitted:
    """``count`` more devices of ``hospital`` were admitted to ``round_id``."""

    round_id: int
    hospital: str
    count: int


@dataclass(frozen=True, slots=True)
class PartialReceived:
    """A hospital aggregator published its partial for ``round_id``."""

    round_id: int
    hospital: str
    num_updates: int
    total_weight: float


@dataclass(frozen=True, slots=True)
class RoundCommitted:
    """The coordinator stored the new model version made from this round."""

    round_id: int
    new_version: int


@dataclass(frozen=True, slots=True)
class AbortRound:
    """Abandon the round now (operator request, or master aggregation failed)."""

    round_id: int
    reason: str


Event = Tick | DevicesAdmitted | PartialReceived | RoundCommitted | AbortRound


# Decisions
@dataclass(frozen=True, slots=True)
class StopSelecting:
    """Stop admitting devices to ``round_id`` (publish a plan with probability 0)."""

    round_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class CloseRound:
    """Combine these partials into the next version."""

    round_id: int
    partials: tuple[PartialReport, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class AbandonRound:
    """The round ends without a new version; ``reason`` says why."""

    round_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event that changed nothing, and why (late partial, other round, ...)."""

    event: Event
    reason: str


Decision = StopSelecting | CloseRound | AbandonRound | Ignored


@dataclass(frozen=True)
class RoundState:
    """Immutable snapshot of one round."""

    plan: RoundTerms
    phase: Phase = Phase.SELECTING
    admitted: Mapping[str, int] = field(default_factory=dict)
    partials: Mapping[str, PartialReport] = field(default_factory=dict)
    outcome: str = ""  # close or abandon reason
    new_version: int | None = None

    @property
    def is_open(self) -> bool:
        """True while the round still accepts partials."""
        return self.phase in (Phase.SELECTING, Phase.TRAINING)

    def quorum_shortfall(self) -> str | None:
        """None if the reported partials meet the plan's minimums, else what is missing."""
        reporting = [p for p in self.partials.values() if p.num_updates > 0]
        updates = sum(p.num_updates for p in reporting)
        plan = self.plan
        if len(reporting) >= plan.min_hospitals and updates >= plan.min_updates:
            return None
        silent = sorted(set(plan.goals) - {p.hospital for p in reporting})
        return (
            f"{len(reporting)}/{len(plan.goals)} hospitals with updates "
            f"(need {plan.min_hospitals}), "
            f"{updates} updates (need {plan.min_updates}); no updates from {', '.join(silent)}"
        )
