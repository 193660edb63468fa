"""Round state machine of one model on the coordinator: events in, decisions out.

Phases::

    selecting ──(admission targets reached | selection deadline)──> training
    selecting|training ──(all hospitals reported, quorum met)──> closing ──(RoundCommitted)──> done
    selecting|training ──(deadline + grace, quorum met)──> closing
    selecting|training ──(deadline + grace or all reported, no quorum | Abort)──> abandoned
    closing ──(Abort: the new version could not be made, scored or stored)──> abandoned

``advance(state, event)`` is pure: it returns the next immutable ``RoundState``
and the decisions the coordinator must carry out (stop admitting, combine
these partials, abandon with this reason). Nothing waits forever: the first
``Tick`` at or after ``deadline_ms + close_grace_ms`` ends the round either way,
and a closing round ends with ``RoundCommitted`` or ``AbortRound``.
Events for another round, late or duplicate partials become ``Ignored``
decisions so the shell can log them.
"""

from __future__ import annotations

from dataclasses import replace

from flcore.round_types import (
    AbandonRound,
    AbortRound,
    CloseRound,
    Decision,
    DevicesAdmitted,
    Event,
    Ignored,
    PartialReceived,
    PartialReport,
    Phase,
    RoundCommitted,
    RoundState,
    RoundTerms,
    StopSelecting,
    Tick,
)

__all__ = [
    "AbandonRound",
    "AbortRound",
    "CloseRound",
    "Decision",
    "DevicesAdmitted",
    "Event",
    "Ignored",
    "PartialReceived",
    "PartialReport",
    "Phase",
    "RoundCommitted",
    "RoundState",
    "RoundTerms",
    "StopSelecting",
    "Tick",
    "advance",
    "open_round",
]

Step = tuple[RoundState, tuple[Decision, ...]]


def open_round(plan: RoundTerms) -> RoundState:
    """Return the state of a freshly opened round (selecting)."""
    return RoundState(plan=plan)


def advance(state: RoundState, event: Event) -> Step:
    """Apply one event; return the new state and the decisions to carry out."""
    round_id = state.plan.round_id
    if not isinstance(event, Tick) and event.round_id != round_id:
        return state, (Ignored(event, f"event for round {event.round_id}, this is {round_id}"),)
    if isinstance(event, Tick):
        return _tick(state, event)
    if isinstance(event, RoundCommitted):
        if state.phase is not Phase.CLOSING:
            return state, (Ignored(event, f"commit while {state.phase}"),)
        return replace(state, phase=Phase.DONE, new_version=event.new_version), ()
    if isinstance(event, AbortRound) and state.phase is Phase.CLOSING:
        return replace(state, phase=Phase.ABANDONED, outcome=event.reason), (
            AbandonRound(round_id, event.reason),
        )
    if not state.is_open:
        return state, (Ignored(event, f"round is {state.phase}"),)
    if isinstance(event, AbortRound):
        return _abandon(state, event.reason)
    if isinstance(event, DevicesAdmitted):
        return _admitted(state, event)
    return _partial(state, event)


def _stop_selecting(state: RoundState, reason: str) -> Step:
    if state.phase is not Phase.SELECTING:
        return state, ()
    return replace(state, phase=Phase.TRAINING), (StopSelecting(state.plan.round_id, reason),)


def _abandon(state: RoundState, reason: str) -> Step:
    state, decisions = _stop_selecting(state, "round ended")
    ended = replace(state, phase=Phase.ABANDONED, outcome=reason)
    return ended, (*decisions, AbandonRound(state.plan.round_id, reason))


def _close_or_abandon(state: RoundState, why: str) -> Step:
    shortfall = state.quorum_shortfall()
    if shortfall is not None:
        return _abandon(state, f"{why} without quorum: {shortfall}")
    state, decisions = _stop_selecting(state, "round ended")
    partials = tuple(p for p in state.partials.values() if p.num_updates > 0)
    closing = replace(state, phase=Phase.CLOSING, outcome=why)
    return closing, (*decisions, CloseRound(state.plan.round_id, partials, why))


def _tick(state: RoundState, tick: Tick) -> Step:
    if not state.is_open:
        return state, ()
    decisions: tuple[Decision, ...] = ()
    if tick.now_ms >= state.plan.selection_deadline_ms:
        state, decisions = _stop_selecting(state, "selection deadline")
    if tick.now_ms >= state.plan.close_at_ms:
        state, more = _close_or_abandon(state, "deadline")
        decisions += more
    return state, decisions


def _admitted(state: RoundState, event: DevicesAdmitted) -> Step:
    plan = state.plan
    if event.hospital not in plan.goals:
        return state, (Ignored(event, f"hospital {event.hospital!r} is not in the plan"),)
    admitted = {
        **state.admitted,
        event.hospital: state.admitted.get(event.hospital, 0) + event.count,
    }
    state = replace(state, admitted=admitted)
    if all(admitted.get(h, 0) >= plan.admission_target(h) for h in plan.goals):
        return _stop_selecting(state, "admission targets reached")
    return state, ()


def _partial(state: RoundState, event: PartialReceived) -> Step:
    if event.hospital not in state.plan.goals:
        return state, (Ignored(event, f"hospital {event.hospital!r} is not in the plan"),)
    if event.hospital in state.partials:
        return state, (Ignored(event, f"duplicate partial from {event.hospital!r}"),)
    report = PartialReport(event.hospital, event.num_updates, event.total_weight)
    state = replace(state, partials={**state.partials, event.hospital: report})
    if set(state.partials) == set(state.plan.goals):
        return _close_or_abandon(state, _all_reported(state))
    return state, ()


def _all_reported(state: RoundState) -> str:
    """The true reason of a close on the last partial: goals met, or which fell short."""
    goals, partials = state.plan.goals, state.partials
    short = [
        f"{h} {partials[h].num_updates}/{g}"
        for h, g in sorted(goals.items())
        if partials[h].num_updates < g
    ]
    if not short:
        return "all hospitals reported"
    return f"all hospitals reported, short of goals: {', '.join(short)}"
