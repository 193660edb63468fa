"""A federation of real role processes on real brokers, to kill parts of and watch.

Every role is ``python -m flctl.main <role>`` with ``FL_*`` settings, its JSON
log in a file under the test's directory; brokers are a fresh local Mosquitto
and Kafka per test (a federation's topics and consumer groups are the state of
one deployment). Faults are SIGKILL, never a polite stop. What a test asserts
comes from what an operator sees: the Kafka topics, the logs, exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flbus.kafka import KafkaBus
from flbus.kafka_auth import KafkaCredentials
from flctl.brokers import LocalBrokers
from flctl.brokers.supervise import Broker
from schemas import AuditEvent, Chunk, ModelVersion, PartialAggregate, RoundPlan, decode, topics
from schemas.chunking import ChunkedReceiver
from schemas.errors import SchemaError
from tests.support.signing import write_private_key, write_public_key

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast_cancer"
HOSPITALS = ("h0", "h1")

#: Short rounds of one small model, 2 hospitals x 4 devices.
BASE_SETTINGS: dict[str, str] = {
    "FL_MODELS": MODEL,
    "FL_HOSPITALS": ",".join(HOSPITALS),
    "FL_DEVICES_PER_HOSPITAL": "4",
    "FL_SEED": "7",
    "FL_ROUNDS": "0",  # forever: a test stops the federation when it has seen enough
    "FL_SELECTION_WINDOW": "2",
    "FL_ROUND_TIMEOUT": "10",
    "FL_CLOSE_GRACE": "1",
    "FL_SERVER_OPTIMIZER": "fedavg",
    "FL_TOKEN_SECRET": "6661756c74732d7375697465",
    "FL_LOG_FORMAT": "json",
    "FL_LOG_LEVEL": "info",
    "FL_STATS_INTERVAL": "2",
}


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def wall_ms() -> int:
    """Now, in ms since the epoch (Kafka record timestamps use the same clock)."""
    return time.time_ns() // 1_000_000


@dataclass
class Role:
    """One role process; its stdout and stderr go to ``log`` (appended across restarts)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)  # exit codes of earlier runs, in order
    #: What the command runs under, e.g. ``ip netns exec NS`` (which execs, keeping the pid).
    prefix: tuple[str, ...] = ()

    def start(self) -> Role:
        """Start (or restart) the process."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "flctl.main", *self.argv],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def kill(self) -> int:
        """SIGKILL the process and reap it; the kill time (wall ms)."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        at = wall_ms()
        self.proc.send_signal(signal.SIGKILL)
        self.exits.append(self.proc.wait(10))
        return at

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, SIGKILL after ``grace`` seconds; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.exits.append(code)
        self.proc = None
        return code

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of every run so far (only ``event == name`` when given)."""
        out: list[dict[str, Any]] = []
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    out.append(event)
        return out

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log, for a failure message."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Entry:
    """One decoded record of the service plane."""

    topic: str
    offset: int
    at_ms: int
    msg: Any


async def read_topics(
    bootstrap: str, names: Iterable[str], credentials: KafkaCredentials | None = None
) -> list[Entry]:
    """Every decodable message on ``names`` from the start, chunked ones reassembled."""
    chunked = {*map(topics.partials_topic, HOSPITALS), topics.KAFKA_MODEL_VERSIONS}
    receiver = ChunkedReceiver(timeout_ms=2**62)
    out: list[Entry] = []
    async with KafkaBus(bootstrap, client_id="faults-reader", credentials=credentials) as bus:
        sub = await bus.subscribe(list(names), start="earliest")
        try:
            ends = dict(await sub.end_offsets())
            positions = {tp: -1 for tp in ends}
            while any(positions[tp] + 1 < end for tp, end in ends.items()):
                record = await sub.get(5.0)
                if record is None:
                    break
                positions[record.tp] = record.offset
                try:
                    if record.topic in chunked:
                        msg = receiver.add(record.value, record.timestamp_ms)
                    else:  # an updates topic holds update chunks and whole failures
                        msg = decode(record.value)
                        if isinstance(msg, Chunk):
                            msg = receiver.add(record.value, record.timestamp_ms)
                except SchemaError:
                    continue
                if msg is not None:
                    out.append(Entry(record.topic, record.offset, record.timestamp_ms, msg))
        finally:
            await sub.close()
    return out


@dataclass
class Plane:
    """What the service plane says happened to one model."""

    entries: list[Entry]

    def of(self, kind: type[Any]) -> list[Any]:
        """Messages of one type, in topic order."""
        return [e.msg for e in self.entries if isinstance(e.msg, kind)]

    def versions(self) -> list[ModelVersion]:
        """Model versions announced, in order."""
        return [v for v in self.of(ModelVersion) if v.model == MODEL]

    def version_times(self) -> list[tuple[int, int]]:
        """(version, time ms of its first announcement) of every version a round made.

        Version 0 (the initial weights) and re-announcements of a known version
        are left out: each entry is one completed round.
        """
        first: dict[int, int] = {}
        for e in self.entries:
            if isinstance(e.msg, ModelVersion) and e.msg.model == MODEL and e.msg.version > 0:
                first.setdefault(e.msg.version, e.at_ms)
        return sorted(first.items())

    def recovery_s(self, killed_at_ms: int) -> float:
        """Seconds from a kill to the first version announced after it."""
        after = [at for _, at in self.version_times() if at >= killed_at_ms]
        assert after, f"no version announced after the kill at {killed_at_ms}"
        return (min(after) - killed_at_ms) / 1000

    def partials(self) -> list[PartialAggregate]:
        """Partials published, in order."""
        return [p for p in self.of(PartialAggregate) if p.model == MODEL]

    def plans(self) -> list[RoundPlan]:
        """Every plan state published, in order."""
        return [p for p in self.of(RoundPlan) if p.model == MODEL]

    def final_states(self) -> dict[int, RoundPlan]:
        """The last plan published for each round."""
        return {p.round_id: p for p in self.plans()}

    def audit(self, kind: str | None = None) -> list[AuditEvent]:
        """Audit events (of one kind)."""
        return [a for a in self.of(AuditEvent) if kind is None or a.kind == kind]


SERVICE_TOPICS = (
    topics.KAFKA_ROUND_PLANS,
    *map(topics.partials_topic, HOSPITALS),
    topics.KAFKA_MODEL_VERSIONS,
    topics.KAFKA_AUDIT,
)


class Federation:
    """Brokers, one coordinator, selectors, one aggregator per hospital and the devices."""

    def __init__(self, root: Path, brokers: LocalBrokers, mqtt_url: str, kafka: str) -> None:
        self.root, self.brokers = root, brokers
        self.mqtt_url, self.kafka = mqtt_url, kafka
        self.roles: dict[str, Role] = {}
        self.kafka_credentials: KafkaCredentials | None = None  # who reads the plane
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FL_")},
            **BASE_SETTINGS,
            "PYTHONPATH": str(REPO),
            "FL_MQTT_URL": mqtt_url,
            "FL_KAFKA_BOOTSTRAP": kafka,
            "FL_STORE_DIR": str(root / "coordinator" / "models"),
            "FL_ARTIFACTS_DIR": str(root / "coordinator" / "artifacts"),
            "FL_DEVICE_STORAGE": str(root / "devices"),
            # The coordinator signs with the test key pair; the devices pin its public half.
            "FL_SIGNING_KEY": str(write_private_key(_folder(root / "signing"))),
            "FL_COORDINATOR_KEY": str(write_public_key(_folder(root / "signing"))),
        }

    def role(self, name: str, argv: list[str], prefix: tuple[str, ...] = (), **env: str) -> Role:
        """Start a role process named ``name`` (its log is ``<name>.log``) under ``prefix``."""
        self.root.mkdir(parents=True, exist_ok=True)
        role = Role(name, argv, {**self.env, **env}, self.root / f"{name}.log", prefix=prefix)
        self.roles[name] = role
        return role.start()

    def start(self, selectors: int = 1, env: dict[str, dict[str, str]] | None = None) -> None:
        """Start every role: coordinator, selectors, aggregators, then the devices.

        ``env`` adds settings to the roles it names (``{"devices": {"FL_DROPOUT": "0.3"}}``).
        """
        env = env or {}
        self.role("coordinator", ["coordinator"], **env.get("coordinator", {}))
        for i in range(selectors):
            self.role(f"selector{i}", ["selector"], **env.get(f"selector{i}", {}))
        for h in HOSPITALS:
            name = f"aggregator-{h}"
            self.role(name, ["aggregator"], FL_HOSPITAL=h, **env.get(name, {}))
        self.role("devices", ["devices"], **env.get("devices", {}))

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every role still running; their exit codes."""
        return {name: role.stop() for name, role in reversed(self.roles.items())}

    def logs(self) -> str:
        """The tail of every role's log, for a failure message."""
        return "\n".join(f"--- {n}\n{r.tail(15)}" for n, r in self.roles.items())

    async def plane(self, *extra: str) -> Plane:
        """The service plane as it stands."""
        names = (*SERVICE_TOPICS, *extra)
        return Plane(await read_topics(self.kafka, names, self.kafka_credentials))

    async def wait_versions(self, count: int, timeout: float, after_ms: int = 0) -> Plane:
        """Wait until ``count`` versions were announced after ``after_ms``; the plane then."""
        deadline = time.monotonic() + timeout
        while True:
            plane = await self.plane()
            if sum(1 for _, at in plane.version_times() if at >= after_ms) >= count:
                return plane
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} versions after {after_ms} not announced within {timeout:.0f}s: "
                    f"{plane.version_times()}\n{self.logs()}"
                )
            await asyncio.sleep(1.0)

    async def wait_log(
        self, role: str, pick: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """The first log event of ``role`` that ``pick`` accepts, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.roles[role].events():
                if pick(event):
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(f"{role}: no such log event within {timeout:.0f}s\n{self.logs()}")

    def open_rounds(self) -> list[int]:
        """Rounds the coordinator's log shows opened and not (yet) closed or abandoned."""
        events = self.roles["coordinator"].events()
        opened = [int(e["round"]) for e in events if e.get("event") == "round.opened"]
        ended = {
            e["round"] for e in events if e.get("event") in ("round.closed", "round.abandoned")
        }
        return [r for r in opened if r not in ended]

    async def wait_open_round(self, min_round: int, timeout: float) -> int:
        """A round (id >= ``min_round``) the coordinator opened and has not ended yet."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [r for r in self.open_rounds() if r >= min_round]
            if live:
                return live[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no round >= {min_round} open within {timeout:.0f}s\n{self.logs()}")

    # -- brokers ---------------------------------------------------------------

    @staticmethod
    def _kill_broker(broker: Broker) -> int:
        pid = broker.running_pid()
        assert pid is not None, f"{broker.name} is not running"
        at = wall_ms()
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        return at

    def kill_mosquitto(self) -> int:
        """SIGKILL Mosquitto; the kill time (wall ms)."""
        return self._kill_broker(self.brokers.mosquitto)

    def kill_kafka(self) -> int:
        """SIGKILL Kafka; the kill time (wall ms)."""
        return self._kill_broker(self.brokers.kafka)

    def restart_brokers(self, *, mqtt: bool = False, kafka: bool = False) -> None:
        """Start the killed broker again: same port, same data directory."""
        self.brokers.up(timeout=120, mqtt=mqtt, kafka=kafka)
