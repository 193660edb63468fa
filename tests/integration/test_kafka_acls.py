"""The secured Kafka (``flctl brokers up --secure``): SASL/SCRAM users and per-role ACLs.

One real broker for the module, provisioned by ``flctl provision`` for h0 and h1,
its ACLs from ``flctl.kafka_acls``. Each role may use exactly its grants; a
refused login or operation is an AccessDeniedError, and a role exits 1 with
one line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from flbus.errors import AccessDeniedError
from flbus.kafka import KafkaBus
from flbus.kafka_auth import KafkaCredentials
from flctl.brokers import BrokerError, LocalBrokers, free_port
from flctl.brokers.kafka_secure import read_users
from flctl.kafka_acls import acls
from flctl.provision import provision
from schemas import ModelVersion, topics
from services.aggregator.app import build
from tests.support.aggregator import World, eventually
from tests.support.coordinator import MODEL, Harness, running_coordinator

pytestmark = pytest.mark.kafka

HOSPITALS = ("h0", "h1")
REPO = Path(__file__).resolve().parents[2]
TOPICS = (
    topics.KAFKA_ROUND_PLANS, topics.KAFKA_CHECKINS, topics.KAFKA_MODEL_VERSIONS,
    topics.KAFKA_EVALUATIONS, topics.KAFKA_ARTIFACTS, topics.KAFKA_AUDIT,
    topics.KAFKA_DEAD_LETTERS, *map(topics.updates_topic, HOSPITALS),
    *map(topics.partials_topic, HOSPITALS),
)  # fmt: skip
ROLES = ("coordinator", "selector", "aggregator-h0", "aggregator-h1")


class Secured:
    """The broker's address and the provisioned users' passwords."""

    def __init__(self, bootstrap: str, provision: Path, env: dict[str, dict[str, str]]) -> None:
        self.bootstrap, self.provision, self.env = bootstrap, provision, env
        self.passwords = read_users(provision / "kafka")[1]

    def bus(self, user: str | None, password: str | None = None) -> KafkaBus:
        """A bus logged in as ``user`` (None: anonymous)."""
        creds = None if user is None else KafkaCredentials(user, password or self.passwords[user])
        return KafkaBus(self.bootstrap, client_id=f"t-{user}", credentials=creds)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("secure-kafka")
    env = {
        p.stem: dict(x.split("=", 1) for x in p.read_text().splitlines())
        for p in provision(root / "provision", HOSPITALS, 1).env_files
    }
    local = LocalBrokers(
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        data_dir=root / "data",
        secure=root / "provision",
    )
    try:
        endpoints = local.up(timeout=180, mqtt=False)
    except BrokerError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no secured Kafka could be had: {exc}", pytrace=False)
        pytest.skip(f"no secured Kafka: {exc}")
    assert endpoints.kafka_bootstrap is not None
    try:
        secured = Secured(endpoints.kafka_bootstrap, root / "provision", env)
        asyncio.run(_create_topics(secured))
        yield secured
    finally:
        local.down(mqtt=False)


async def _create_topics(secured: Secured) -> None:
    async with secured.bus("admin") as admin:
        for name in TOPICS:
            await admin.create_topic(name, compacted=name in topics.KAFKA_COMPACTED)


@pytest.fixture
async def admin(secured: Secured) -> AsyncIterator[KafkaBus]:
    async with secured.bus("admin") as bus:
        yield bus


def _granted(user: str, operation: str) -> set[str]:
    return {a.name for a in acls(HOSPITALS) if a.user == user and a.operation == operation}


async def _read(bus: KafkaBus, topic: str) -> None:
    async with await bus.subscribe([topic]) as sub:
        await sub.get(0.3)


# -- authentication ----------------------------------------------------------------


async def test_kafka_refuses_an_anonymous_client(secured: Secured) -> None:
    with pytest.raises(AccessDeniedError, match="wants authentication"):
        await secured.bus(None).start()


async def test_kafka_refuses_a_wrong_password(secured: Secured) -> None:
    with pytest.raises(AccessDeniedError, match="refused user 'selector'"):
        await secured.bus("selector", "not-the-password").start()


# -- the roles' own code under their grants (first: the probes below write junk) ------


async def test_aggregator_folds_and_publishes_under_its_grants(
    secured: Secured, admin: KafkaBus
) -> None:
    world = World(admin, unique=False)  # h0; admin publishes the plan, version and update
    await world.version(0)
    await world.plan(goal=1)
    await world.send(world.update("d1"))
    async with secured.bus("aggregator-h0") as bus:
        agg = build(world.config(), bus, world.clock)
        stop = asyncio.Event()
        task = asyncio.create_task(agg.run(stop))
        try:
            await eventually(lambda: agg.stats().partials >= 1 or task.done(), timeout=30)
        finally:
            stop.set()
            await task  # re-raises an AccessDeniedError the aggregator met
    assert [p.round_id for p in await world.partials()][-1:] == [1]


async def test_coordinator_runs_a_round_under_its_grants(
    secured: Secured, admin: KafkaBus, tmp_path: Path
) -> None:
    async with secured.bus("coordinator") as bus, running_coordinator(tmp_path, bus=bus) as h:
        plans = await admin.subscribe([topics.KAFKA_ROUND_PLANS])
        versions = await admin.subscribe([topics.KAFKA_MODEL_VERSIONS])
        seen = Harness(admin, h.clock, h.coordinator, h.store, plans, versions)
        async with plans, versions:
            v0 = await _version_of(seen)
            plan = await seen.next_plan("selecting")
            size = v0.tensors.flat.size
            await seen.partial(plan, "h0", np.full(size, 1.0, np.float32), n=10)
            await seen.partial(plan, "h1", np.full(size, 1.0, np.float32), n=10)
            v1 = await _version_of(seen)
    assert v1.version == v0.version + 1


async def _version_of(seen: Harness) -> ModelVersion:
    """The next version of the coordinator's model (other tests announce versions too)."""
    while (version := await seen.next_version()).model != MODEL:
        pass
    return version


# -- every grant works, and nothing else ------------------------------------------


@pytest.mark.parametrize("user", ROLES)
async def test_role_may_write_exactly_its_granted_topics(secured: Secured, user: str) -> None:
    allowed = _granted(user, "write")
    async with secured.bus(user) as bus:
        for topic in TOPICS:
            if topic in allowed:
                await bus.publish(topic, b"acl probe", key=b"k")
            else:
                with pytest.raises(AccessDeniedError):
                    await bus.publish(topic, b"acl probe", key=b"k")
    assert allowed  # the table grants each role some writes


@pytest.mark.parametrize("user", ROLES)
async def test_role_may_read_its_granted_topics(secured: Secured, user: str) -> None:
    async with secured.bus(user) as bus:
        for topic in sorted(_granted(user, "read") & set(TOPICS)):
            await _read(bus, topic)


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        ("selector", topics.partials_topic("h0")),
        ("selector", topics.KAFKA_CHECKINS),  # it writes check-ins, it does not read them
        ("aggregator-h1", topics.updates_topic("h0")),
        ("aggregator-h0", topics.partials_topic("h1")),
        ("aggregator-h0", topics.KAFKA_AUDIT),
        ("coordinator", topics.updates_topic("h0")),
    ],
)
async def test_role_may_not_read_other_topics(secured: Secured, user: str, topic: str) -> None:
    async with secured.bus(user) as bus:
        with pytest.raises(AccessDeniedError):
            await _read(bus, topic)


async def test_role_may_commit_only_in_its_own_group(secured: Secured) -> None:
    async with secured.bus("aggregator-h0") as bus:
        async with await bus.subscribe([topics.updates_topic("h0")], group="aggregator.h0") as own:
            await own.get(0.5)
            await own.commit()
        with pytest.raises(AccessDeniedError):
            async with await bus.subscribe([topics.updates_topic("h0")], group="coordinator") as x:
                await x.get(2.0)


async def test_forged_partial_from_another_principal_is_refused(
    secured: Secured, admin: KafkaBus
) -> None:
    # Prepare: what h1's partials topic holds now.
    target = topics.partials_topic("h1")
    async with await admin.subscribe([target]) as sub:
        before = await sub.end_offsets()

    # Execute: the selector and h0's aggregator try to publish a partial as h1.
    for forger in ("selector", "aggregator-h0"):
        async with secured.bus(forger) as bus:
            with pytest.raises(AccessDeniedError):
                await bus.publish(target, b"forged partial", key=b"m")

    # Assert: nothing landed.
    async with await admin.subscribe([target]) as sub:
        assert await sub.end_offsets() == before


def test_role_exits_1_with_one_line_when_kafka_refuses_it(secured: Secured) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FL_")},
        "PYTHONPATH": str(REPO),
        "FL_KAFKA_BOOTSTRAP": secured.bootstrap,
        "FL_HOSPITAL": "h0",
        "FL_TOKEN_SECRET": "s" * 32,
        "FL_KAFKA_USERNAME": "aggregator-h0",
        "FL_KAFKA_PASSWORD": "wrong",
    }
    out = subprocess.run(
        [sys.executable, "-m", "flctl.main", "aggregator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [x for x in out.stderr.splitlines() if x.startswith("flctl aggregator:")]
    assert out.returncode == 1, out.stderr[-2000:]
    assert len(lines) == 1 and "refused user 'aggregator-h0'" in lines[0], out.stderr[-2000:]
