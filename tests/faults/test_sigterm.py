"""Every role exits within a few seconds of SIGTERM: mid-round, and with Kafka frozen.

An orchestrator sends SIGTERM and waits (Docker: 10 s) before SIGKILL; a role
that ignores it loses what a clean stop would have committed. Real aggregator
and coordinator processes on a real Kafka, stopped mid-round and then again
with the broker SIGSTOPped, so every call to it hangs.
"""

from __future__ import annotations

import os
import signal
import time

from tests.faults.harness import Federation, Role

ROLES = ("coordinator", "aggregator-h0")


def sigterm(role: Role, within: float) -> tuple[int | None, float]:
    """SIGTERM ``role``; (exit code, seconds it took), the code None if it outlived ``within``."""
    assert role.proc is not None and role.alive, f"{role.name} is not running\n{role.tail()}"
    started = time.monotonic()
    role.proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = role.proc.wait(within)
    except Exception:  # still running: the test fails, the fixture kills it
        code = None
    return code, time.monotonic() - started


async def test_roles_exit_cleanly_within_seconds_of_sigterm_mid_round(
    federation: Federation,
) -> None:
    federation.start()
    await federation.wait_versions(1, timeout=120)
    await federation.wait_open_round(2, timeout=60)
    for name in ROLES:
        code, took = sigterm(federation.roles[name], within=5)
        print(f"[faults] {name}: SIGTERM mid-round -> exit {code} after {took:.1f} s")
        assert code == 0, f"{name}: exit {code} after {took:.1f} s\n{federation.roles[name].tail()}"


async def test_roles_exit_within_seconds_of_sigterm_with_kafka_frozen(
    federation: Federation,
) -> None:
    federation.start()
    await federation.wait_versions(1, timeout=120)
    pid = federation.brokers.kafka.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # every request to Kafka now hangs
    try:
        time.sleep(2)  # the roles are inside calls to the frozen broker
        for name in ROLES:
            code, took = sigterm(federation.roles[name], within=8)
            print(f"[faults] {name}: SIGTERM, Kafka frozen -> exit {code} after {took:.1f} s")
            assert code is not None, f"{name}: still running {took:.0f} s after SIGTERM"
    finally:
        os.kill(pid, signal.SIGCONT)
