import pytest

from flcore.errors import InvalidParameter
from flcore.hospital_round import HospitalRound, HospitalTick, UpdateAccepted, advance_hospital
from flcore.rounds import (
    AbandonRound,
    AbortRound,
    CloseRound,
    DevicesAdmitted,
    Ignored,
    PartialReceived,
    Phase,
    RoundCommitted,
    RoundState,
    RoundTerms,
    StopSelecting,
    Tick,
    advance,
    open_round,
)

pytestmark = pytest.mark.unit

PLAN = RoundTerms(
    model="digits",
    round_id=1,
    base_version=0,
    goals={"h0": 10, "h1": 10, "h2": 10},
    selection_deadline_ms=1_000,
    deadline_ms=5_000,
    close_grace_ms=500,
    min_hospital_fraction=0.6,
    min_update_fraction=0.5,
)


def _run(state: RoundState, *events: object) -> tuple[RoundState, list[object]]:
    out: list[object] = []
    for e in events:
        state, decisions = advance(state, e)  # type: ignore[arg-type]
        out.extend(decisions)
    return state, out


def test_every_device_of_a_known_population_admitted_ends_selection() -> None:
    # Fraction 1: goals are every device; 1.3 x that can never be admitted, so without the
    # cap each window ran to its end (a round of 300 devices waited 16 s for nobody).
    whole = RoundTerms(
        model="m",
        round_id=1,
        base_version=0,
        goals={"h0": 10, "h1": 10},
        selection_deadline_ms=2_000,
        deadline_ms=10_000,
        expected={"h0": 10, "h1": 10},
    )
    state, out = _run(open_round(whole), DevicesAdmitted(1, "h0", 10), DevicesAdmitted(1, "h1", 10))
    assert state.phase is Phase.TRAINING
    assert out == [StopSelecting(1, "admission targets reached")]


def test_selecting_until_admission_targets_reached() -> None:
    state, out = _run(open_round(PLAN), DevicesAdmitted(1, "h0", 13), DevicesAdmitted(1, "h1", 13))
    assert state.phase is Phase.SELECTING and out == []
    state, out = _run(state, DevicesAdmitted(1, "h2", 12), DevicesAdmitted(1, "h2", 1))
    assert state.phase is Phase.TRAINING
    assert out == [StopSelecting(1, "admission targets reached")]
    assert PLAN.admission_target("h0") == 13


def test_selection_deadline_moves_to_training_once() -> None:
    state, out = _run(open_round(PLAN), Tick(999), Tick(1_000), Tick(1_500))
    assert state.phase is Phase.TRAINING
    assert out == [StopSelecting(1, "selection deadline")]


def test_closes_when_all_hospitals_reported_goal() -> None:
    state, out = _run(
        open_round(PLAN),
        Tick(1_000),
        PartialReceived(1, "h0", 10, 100.0),
        PartialReceived(1, "h1", 10, 90.0),
        PartialReceived(1, "h2", 10, 80.0),
    )
    assert state.phase is Phase.CLOSING
    close = out[-1]
    assert isinstance(close, CloseRound) and close.reason == "all hospitals reported"
    assert [p.hospital for p in close.partials] == ["h0", "h1", "h2"]
    state, out = _run(state, RoundCommitted(1, new_version=1))
    assert state.phase is Phase.DONE and state.new_version == 1 and out == []


def test_closes_at_deadline_with_quorum_when_a_hospital_is_down() -> None:
    state, out = _run(
        open_round(PLAN),
        PartialReceived(1, "h0", 9, 90.0),
        PartialReceived(1, "h1", 7, 70.0),
        Tick(5_499),
    )
    assert state.phase is Phase.TRAINING  # h2 is silent: wait out the grace period
    assert out == [StopSelecting(1, "selection deadline")]
    state, out = _run(state, Tick(5_500))
    assert state.phase is Phase.CLOSING
    assert isinstance(out[-1], CloseRound) and out[-1].reason == "deadline"
    assert {p.hospital for p in out[-1].partials} == {"h0", "h1"}


def test_abandons_at_deadline_without_quorum_and_says_why() -> None:
    state, out = _run(open_round(PLAN), PartialReceived(1, "h0", 10, 100.0), Tick(10_000))
    assert state.phase is Phase.ABANDONED
    abandon = out[-1]
    assert isinstance(abandon, AbandonRound)
    assert "1/3 hospitals" in abandon.reason and "need 2" in abandon.reason
    assert "h1, h2" in abandon.reason
    assert state.outcome == abandon.reason


def test_abandons_when_all_reported_but_too_few_updates() -> None:
    state, out = _run(
        open_round(PLAN),
        PartialReceived(1, "h0", 3, 3.0),
        PartialReceived(1, "h1", 3, 3.0),
        PartialReceived(1, "h2", 0, 0.0),
    )
    assert state.phase is Phase.ABANDONED
    assert isinstance(out[-1], AbandonRound) and "6 updates (need 15)" in out[-1].reason


def test_empty_partials_excluded_from_close() -> None:
    _, out = _run(
        open_round(PLAN),
        PartialReceived(1, "h0", 10, 1.0),
        PartialReceived(1, "h1", 10, 1.0),
        PartialReceived(1, "h2", 0, 0.0),
    )
    assert isinstance(out[-1], CloseRound)
    assert {p.hospital for p in out[-1].partials} == {"h0", "h1"}


def test_late_duplicate_foreign_and_unknown_events_ignored() -> None:
    state, _ = _run(open_round(PLAN), PartialReceived(1, "h0", 10, 1.0))
    state, out = _run(state, PartialReceived(1, "h0", 10, 1.0))
    assert isinstance(out[0], Ignored) and "duplicate" in out[0].reason
    state, out = _run(state, PartialReceived(2, "h1", 10, 1.0), PartialReceived(1, "hX", 1, 1.0))
    assert all(isinstance(d, Ignored) for d in out) and len(out) == 2
    state, _ = _run(state, PartialReceived(1, "h1", 10, 1.0), Tick(6_000))
    assert state.phase is Phase.CLOSING
    closed = state
    state, out = _run(state, PartialReceived(1, "h2", 10, 1.0), Tick(9_000))
    assert state == closed
    assert isinstance(out[0], Ignored) and "closing" in out[0].reason
    _, out = _run(open_round(PLAN), RoundCommitted(1, 1))
    assert isinstance(out[0], Ignored)


def test_abort_abandons_open_round() -> None:
    state, out = _run(open_round(PLAN), AbortRound(1, "operator"))
    assert state.phase is Phase.ABANDONED
    assert out == [StopSelecting(1, "round ended"), AbandonRound(1, "operator")]


def test_abort_abandons_closing_round_without_a_version() -> None:
    closing, _ = _run(open_round(PLAN), *(PartialReceived(1, h, 10, 1.0) for h in PLAN.goals))
    assert closing.phase is Phase.CLOSING

    state, out = _run(closing, AbortRound(1, "evaluate failed: boom"))

    assert state.phase is Phase.ABANDONED and state.new_version is None
    assert state.outcome == "evaluate failed: boom"
    assert out == [AbandonRound(1, "evaluate failed: boom")]
    again, out = _run(state, RoundCommitted(1, 1), AbortRound(1, "twice"))
    assert again == state and all(isinstance(d, Ignored) for d in out)


def test_terminal_states_ignore_ticks() -> None:
    state, _ = _run(open_round(PLAN), Tick(100_000))
    assert state.phase is Phase.ABANDONED
    again, out = _run(state, Tick(200_000))
    assert again == state and out == []


@pytest.mark.parametrize(
    "over",
    [
        dict(goals={}),
        dict(goals={"h0": 0}),
        dict(selection_deadline_ms=6_000),
        dict(over_selection=0.9),
        dict(min_update_fraction=1.5),
        dict(close_grace_ms=-1),
    ],
)
def test_plan_rejects_bad_settings(over: dict[str, object]) -> None:
    kw = dict(
        model="m",
        round_id=1,
        base_version=0,
        goals={"h0": 1},
        selection_deadline_ms=1_000,
        deadline_ms=5_000,
    )
    with pytest.raises(InvalidParameter):
        RoundTerms(**{**kw, **over})  # type: ignore[arg-type]


HR = HospitalRound(model="digits", hospital="h0", round_id=1, goal=3, deadline_ms=5_000)


def test_hospital_publishes_when_goal_met_then_closes() -> None:
    state, d = advance_hospital(HR, UpdateAccepted(1, 10.0))
    state, d = advance_hospital(state, UpdateAccepted(1, 20.0))
    assert d is None and state.is_open
    state, d = advance_hospital(state, UpdateAccepted(1, 30.0))
    assert d is not None and d.reason == "goal_met" and d.num_updates == 3
    assert d.total_weight == 60.0 and not state.is_open
    assert advance_hospital(state, HospitalTick(10_000)) == (state, None)


def test_hospital_publishes_at_deadline_even_when_empty() -> None:
    state, d = advance_hospital(HR, HospitalTick(4_999))
    assert d is None
    state, d = advance_hospital(state, HospitalTick(5_000))
    assert d is not None and d.reason == "deadline" and d.num_updates == 0
    assert advance_hospital(state, UpdateAccepted(1, 1.0))[1] is None


def test_hospital_refuses_update_of_other_round() -> None:
    with pytest.raises(InvalidParameter):
        advance_hospital(HR, UpdateAccepted(2, 1.0))


def test_a_close_on_partials_short_of_their_goals_says_so() -> None:
    state, out = _run(
        open_round(PLAN),
        PartialReceived(1, "h0", 10, 100.0),
        PartialReceived(1, "h1", 4, 90.0),
        PartialReceived(1, "h2", 10, 80.0),
    )
    close = out[-1]
    assert isinstance(close, CloseRound) and state.phase is Phase.CLOSING
    assert close.reason == "all hospitals reported, short of goals: h1 4/10"
