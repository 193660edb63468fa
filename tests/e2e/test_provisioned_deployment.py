"""A deployment as the README sets it up: ``flctl provision``, locked brokers, roles from env files.

``flctl provision --out DIR`` (the real command), ``flctl brokers up --secure
DIR`` (the same launcher, on free ports), then every role as a process started
with ``env $(cat DIR/services/<instance>.env)`` and nothing else that is a
credential, key, token secret or hospital list: the federation's own test key
pair and token secret are taken out of the environment first, so a setting
provision forgot fails the round instead of being filled in by the harness.
Rounds must complete over the brokers with anonymous access off and the ACLs on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flbus.kafka_auth import KafkaCredentials
from flctl.brokers import BrokerError, LocalBrokers, free_port
from flctl.brokers.kafka_secure import read_users
from schemas import topics
from tests.conftest import _unavailable
from tests.faults.harness import HOSPITALS, REPO, Federation

pytestmark = [pytest.mark.mqtt, pytest.mark.kafka, pytest.mark.timeout(300)]

DEVICES_PER_HOSPITAL = 4
#: What provision must supply: the harness's own values are removed before the roles start.
PROVIDED = (
    "FL_TOKEN_SECRET", "FL_SIGNING_KEY", "FL_COORDINATOR_KEY", "FL_MQTT_URL",
    "FL_HOSPITALS", "FL_DEVICES_PER_HOSPITAL",
)  # fmt: skip


def _provision(out: Path, mqtt_port: int) -> str:
    argv = [
        *("provision", "--out", str(out), "--hospitals", ",".join(HOSPITALS)),
        *("--devices-per-hospital", str(DEVICES_PER_HOSPITAL)),
        *("--mqtt-url", f"mqtt://127.0.0.1:{mqtt_port}"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FL_")}
    done = subprocess.run(
        [sys.executable, "-m", "flctl.main", *argv],
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[Federation, Path, str]]:
    """A provisioned directory, secured brokers from it, a federation to start on them."""
    out, mqtt_port = tmp_path / "secrets", free_port()
    summary = _provision(out, mqtt_port)
    brokers = LocalBrokers(
        mqtt_port,
        free_port(),
        tmp_path / "brokers",
        kafka_controller_port=free_port(),
        secure=out,
        mqtts_port=free_port(),
    )
    try:
        endpoints = brokers.up(timeout=180)
    except BrokerError as exc:
        brokers.down(grace=5)
        _unavailable(f"no secured brokers: {exc}")
    assert endpoints.kafka_bootstrap is not None
    fed = Federation(tmp_path / "roles", brokers, "unused://", endpoints.kafka_bootstrap)
    for name in PROVIDED:
        fed.env.pop(name, None)
    fed.kafka_credentials = KafkaCredentials("admin", read_users(out / "kafka")[1]["admin"])
    try:
        yield fed, out, summary
    finally:
        fed.stop()
        brokers.down(grace=5)


def _start(fed: Federation, out: Path, instance: str, argv: list[str]) -> None:
    """``env $(cat DIR/services/<instance>.env) flctl <argv>``, word splitting and all."""
    lines = (out / "services" / f"{instance}.env").read_text().split()
    fed.role(instance, argv, prefix=("env", *lines))


async def test_rounds_complete_with_provisioned_identities_on_locked_brokers(
    locked: tuple[Federation, Path, str],
) -> None:
    fed, out, summary = locked
    for h in HOSPITALS:
        (line,) = [x for x in summary.splitlines() if x.strip().startswith(f"hospital {h}:")]
        assert f"services/aggregator-{h}.env" in line and f"devices/{h}.csv" in line, summary

    _start(fed, out, "coordinator", ["coordinator"])
    _start(fed, out, "selector", ["selector"])
    for h in HOSPITALS:
        _start(fed, out, f"aggregator-{h}", ["aggregator"])
        _start(fed, out, f"devices-{h}", ["devices"])

    plane = await fed.wait_versions(2, timeout=180)

    done = [p for p in plane.final_states().values() if p.state == "done"]
    assert done, f"no round done: {plane.final_states()}\n{fed.logs()}"
    by_round = {
        r: {p.hospital_id for p in plane.partials() if p.round_id == r and p.num_examples}
        for r in {p.round_id for p in done}
    }
    assert any(got == set(HOSPITALS) for got in by_round.values()), by_round
    admitted = {a.device_id for a in plane.audit("device.admitted")}
    assert {d.split("-")[0] for d in admitted} == set(HOSPITALS), admitted
    # The devices signed in as themselves: the selector saw their check-ins, and every
    # device verified the signed plans (no control message refused as unsigned or forged).
    for h in HOSPITALS:
        refused = fed.roles[f"devices-{h}"].events("control.refused")
        assert not refused, refused[:3]
    assert all(role.alive for role in fed.roles.values()), fed.logs()
    assert topics.partials_topic(HOSPITALS[0]) in {e.topic for e in plane.entries}
