"""SIGKILL Mosquitto, then separately Kafka, mid-round; restart each on its port and data."""

from __future__ import annotations

import asyncio

from tests.faults.conftest import record_recovery
from tests.faults.harness import Federation


async def _mid_round(federation: Federation) -> int:
    """Wait for a round after the first version to open; its id."""
    await federation.wait_versions(1, timeout=120)
    return await federation.wait_open_round(2, timeout=60)


def _all_alive(federation: Federation) -> None:
    dead = {n: r.proc.returncode for n, r in federation.roles.items() if not r.alive and r.proc}
    assert not dead, f"roles exited: {dead}\n{federation.logs()}"


async def test_mosquitto_killed_mid_round_rounds_go_on(federation: Federation) -> None:
    federation.start()
    await _mid_round(federation)
    killed_at = federation.kill_mosquitto()
    await asyncio.sleep(1.0)
    federation.restart_brokers(mqtt=True)

    plane = await federation.wait_versions(2, timeout=120, after_ms=killed_at)
    record_recovery("mosquitto SIGKILL mid-round", plane.recovery_s(killed_at))
    after = [p for p in plane.plans() if p.state == "done" and p.round_id > 1]
    assert after, "no round completed after the broker came back"
    _all_alive(federation)


async def test_kafka_killed_mid_round_rounds_go_on(federation: Federation) -> None:
    federation.start()
    await _mid_round(federation)
    killed_at = federation.kill_kafka()
    await asyncio.sleep(1.0)
    federation.restart_brokers(kafka=True)

    plane = await federation.wait_versions(2, timeout=150, after_ms=killed_at)
    record_recovery("kafka SIGKILL mid-round", plane.recovery_s(killed_at))
    announced = sorted({(v.version, v.round_id) for v in plane.versions()})
    numbers = [v for v, _ in announced]  # version 0: the initial weights
    assert numbers == list(range(len(numbers))), f"versions skip or repeat: {announced}"
    _all_alive(federation)
