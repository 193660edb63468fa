"""The hospital aggregator's side of a round: when to publish the partial.

The aggregator publishes exactly one partial per round: as soon as its
hospital's goal of accepted updates is met, or at the round deadline with
whatever it has (possibly nothing, so the coordinator hears it is alive).
After that the round is closed for this hospital and later updates are
rejected as ``closed_round`` by validation (``RoundFacts.is_open``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from flcore.errors import InvalidParameter


@dataclass(frozen=True, slots=True)
class HospitalRound:
    """Immutable per-hospital view of one round."""

    model: str
    hospital: str
    round_id: int
    goal: int
    deadline_ms: int
    accepted: int = 0
    total_weight: float = 0.0
    published: bool = False

    def __post_init__(self) -> None:
        if self.goal <= 0:
            raise InvalidParameter(f"goal must be > 0, got {self.goal}")

    @property
    def is_open(self) -> bool:
        """True until the partial is published."""
        return not self.published


@dataclass(frozen=True, slots=True)
class UpdateAccepted:
    """An update passed validation and was folded into the running sum."""

    round_id: int
    weight: float


@dataclass(frozen=True, slots=True)
class HospitalTick:
    """The clock reached ``now_ms``."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class PublishPartial:
    """Publish the partial now, then commit the consumed offsets."""

    round_id: int
    reason: str  # "goal_met" or "deadline"
    num_updates: int
    total_weight: float


def advance_hospital(
    state: HospitalRound, event: UpdateAccepted | HospitalTick
) -> tuple[HospitalRound, PublishPartial | None]:
    """Apply one event; return the new state and a PublishPartial when it is time."""
    if state.published:
        return state, None
    if isinstance(event, UpdateAccepted):
        if event.round_id != state.round_id:
            raise InvalidParameter(
                f"update for round {event.round_id} folded into {state.round_id}"
            )
        state = replace(
            state, accepted=state.accepted + 1, total_weight=state.total_weight + event.weight
        )
        if state.accepted >= state.goal:
            return _publish(state, "goal_met")
        return state, None
    if event.now_ms >= state.deadline_ms:
        return _publish(state, "deadline")
    return state, None


def _publish(state: HospitalRound, reason: str) -> tuple[HospitalRound, PublishPartial]:
    decision = PublishPartial(state.round_id, reason, state.accepted, state.total_weight)
    return replace(state, published=True), decision
