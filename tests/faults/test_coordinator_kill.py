"""SIGKILL the coordinator mid-round, restart it: rounds go on, versions stay a sequence."""

from __future__ import annotations

import asyncio

from tests.faults.conftest import record_recovery
from tests.faults.harness import HOSPITALS, Federation


async def test_coordinator_killed_mid_round_resumes_the_sequence(federation: Federation) -> None:
    # Training a round takes a millisecond or two here (sessions are reused); up to
    # 1500x slower stretches each round over a second or more, so the kill lands
    # inside one. The slowdown is seeded per device, so every round has slow devices.
    # The population is configured: goals learnt from check-ins move from round to
    # round when slow devices spend whole rounds training (they do not check in then),
    # and a restarted coordinator re-learns them from the check-ins after its committed
    # offset, so goals are no measure of what the restart kept.
    federation.start(
        env={
            "devices": {"FL_MAX_SLOWDOWN": "1500"},
            "coordinator": {"FL_POPULATION": ",".join(f"{h}=4" for h in HOSPITALS)},
        }
    )
    await federation.wait_versions(2, timeout=120)
    coordinator = federation.roles["coordinator"]
    await federation.wait_open_round(3, timeout=60)
    await asyncio.sleep(0.3)  # devices are admitted and training
    killed_at = coordinator.kill()
    open_at_kill = federation.open_rounds()
    assert open_at_kill, f"the kill fell between two rounds\n{coordinator.tail()}"
    open_round = open_at_kill[-1]
    await asyncio.sleep(3.0)  # partials of the open round are published while it is down
    coordinator.start()

    plane = await federation.wait_versions(2, timeout=120, after_ms=killed_at)
    record_recovery("coordinator SIGKILL mid-round", plane.recovery_s(killed_at))

    announced = sorted({(v.version, v.round_id) for v in plane.versions()})
    numbers = [v for v, _ in announced]  # version 0: the initial weights
    assert numbers == list(range(len(numbers))), f"versions skip or repeat: {announced}"
    rounds = [r for _, r in announced]
    assert rounds == sorted(set(rounds)), f"one round made two versions, or went back: {announced}"

    last = plane.final_states()
    assert last[open_round].state in ("done", "abandoned") and last[open_round].reason, (
        f"round {open_round}, open at the kill, ends as {last[open_round]}"
    )
    opened_ids = [p.round_id for p in plane.plans() if p.state == "selecting"]
    assert opened_ids == sorted(set(opened_ids)), f"round ids reused: {opened_ids}"

    assert coordinator.exits == [-9] and coordinator.alive, coordinator.tail()
