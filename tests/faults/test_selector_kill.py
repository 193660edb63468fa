"""SIGKILL one of two selector replicas: devices are still answered, rounds reach their goal."""

from __future__ import annotations

from tests.faults.conftest import record_recovery
from tests.faults.harness import HOSPITALS, Federation


async def test_one_of_two_selectors_killed_rounds_reach_their_goal(
    federation: Federation,
) -> None:
    federation.start(selectors=2)
    await federation.wait_versions(2, timeout=120)
    open_round = await federation.wait_open_round(3, timeout=60)
    killed_at = federation.roles["selector1"].kill()

    plane = await federation.wait_versions(3, timeout=120, after_ms=killed_at)
    record_recovery("one of two selectors SIGKILLed", plane.recovery_s(killed_at))

    last = plane.final_states()
    later = [r for r in sorted(last) if r > open_round and last[r].state in ("done", "abandoned")]
    assert len(later) >= 2, f"rounds after the kill: { {r: last[r].state for r in last} }"
    for round_id in later:
        plan = last[round_id]
        admitted = plane.audit("device.admitted")
        got = {
            h: len({a.device_id for a in admitted if a.round_id == round_id and a.hospital_id == h})
            for h in HOSPITALS
        }
        goals = dict(zip(plan.hospitals, plan.targets, strict=True))
        assert plan.state == "done" and "deadline" not in plan.reason, (
            f"round {round_id} after the kill: {plan.state} ({plan.reason}); "
            f"admitted {got}, goals {goals}"
        )
        assert all(got[h] >= goals[h] for h in HOSPITALS), f"admitted {got}, goals {goals}"
    assert federation.roles["selector0"].alive, federation.roles["selector0"].tail()
