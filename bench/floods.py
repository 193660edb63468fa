"""Peak memory of each role under the floods of issue #8, and what each flood comes to.

    python -m bench.floods [--uploads 1000] [--claim-mb 100] [--checkins 5000]

Starts a local Mosquitto and Kafka on free ports, then the coordinator, one
selector, one aggregator per hospital (h0, h1) and the simulated devices, each
as ``python -m flctl.main <role>``. The idle RSS of each service role after
start-up is the reference; then, one after the other:

1. ``uploads``: open upload streams (first chunk only) each claiming
   ``--claim-mb`` MB, on ``fl.v1.updates.h0`` as a selector would bridge them;
2. ``5mb-string``: a check-in whose runtime_version is a 5 MB string;
3. ``100k-models``: a check-in listing 100,000 models;
4. ``no-token``: a TrainingFailure without token headers, and an upload for
   a made-up hospital (no ``fl.v1.updates.<it>`` topic may appear);
5. ``checkins``: fake check-ins from distinct device ids over 12 s
   (each round's goals may grow at most ``goal_growth`` = 2 times);
6. ``examples``: an upload with a valid token claiming num_examples = 10^9.

For each flood and role it prints the idle RSS, the peak RSS during and after
the flood (VmRSS every 100 ms, and VmHWM), the growth, the outcome seen on
``fl.v1.audit`` / ``fl.v1.round-plans``, and whether the role is alive. After each
flood a normal device check-in must be answered and a round must still close.
Exit 1 if a role died or an outcome is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from aiokafka.admin import AIOKafkaAdminClient

from bench.flood_kit import MB, Memory, Role, Watch, role_env, wall_ms
from flbus.errors import BusError
from flbus.kafka import KafkaBus
from flbus.mqtt import MqttBus
from flcore.tokens import issue_token
from flctl.brokers import BrokerError, LocalBrokers, free_port
from flproc.logs import prepare_process
from flproc.parsers import secret_bytes
from schemas import CheckIn, Chunk, ModelUpdate, RoundPlan, Tensors, TrainingFailure, encode
from schemas.chunking import encode_chunked
from schemas.codec import encode_reference
from schemas.headers import upload_headers
from schemas.topics import checkin_topic, task_topic, updates_topic, upload_topic

MODEL = "breast_cancer"
HOSPITALS = ("h0", "h1")
SECRET = "666c6f6f64732d62656e6368"
SETTINGS = {
    "FL_MODELS": MODEL,
    "FL_HOSPITALS": ",".join(HOSPITALS),
    "FL_DEVICES_PER_HOSPITAL": "4",
    "FL_SEED": "7",
    "FL_ROUNDS": "0",
    "FL_SELECTION_WINDOW": "2",
    "FL_ROUND_TIMEOUT": "10",
    "FL_CLOSE_GRACE": "1",
    "FL_SERVER_OPTIMIZER": "fedavg",
    "FL_TOKEN_SECRET": SECRET,
    "FL_LOG_FORMAT": "json",
    "FL_LOG_LEVEL": "warning",
}
SERVICES = ("coordinator", "selector", "aggregator-h0", "aggregator-h1")
GROWTH = 2.0  # the coordinator's default goal_growth
Result = tuple[str, bool]  # (outcome, as expected)


def _checkin(hospital: str, device: str, **changes: object) -> CheckIn:
    fields: dict[str, object] = dict(
        device_id=device, hospital_id=hospital, models=(MODEL,), runtime_version="1.19.2",
        sdk_version="0.1", charging=True, unmetered=True, idle=True, battery_pct=90.0,
        free_memory_mb=512, sent_at_ms=wall_ms(),
    )  # fmt: skip
    checkin = CheckIn(**fields)  # type: ignore[arg-type]
    for name, value in changes.items():  # past the constructor's checks, as an attacker would
        object.__setattr__(checkin, name, value)
    return checkin


def _refusals(watch: Watch, since: int, prefix: str) -> Counter[str]:
    return Counter(
        f"{a.kind}:{a.reason}"
        for a in watch.audits(since)
        if a.device_id.startswith(prefix) and a.kind.endswith("rejected")
    )


async def _settle(watch: Watch, since: int, prefix: str, want: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sum(_refusals(watch, since, prefix).values()) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.2)


def _said(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.most_common()) or "nothing audited"


class Bench:
    """The brokers' endpoints, the watch on Kafka and the floods."""

    def __init__(self, mqtt_url: str, kafka: str, watch: Watch, args: argparse.Namespace) -> None:
        self.mqtt_url, self.kafka, self.watch, self.args = mqtt_url, kafka, watch, args
        self.probes = 0

    async def answered(self) -> bool:
        """Whether a normal check-in (a fresh device of h1) gets a Task or RetryAfter."""
        self.probes += 1
        device = f"probe{self.probes}"
        async with MqttBus(self.mqtt_url) as phone:
            sub = await phone.subscribe([task_topic("h1", device)])
            await phone.publish(checkin_topic("h1", device), encode(_checkin("h1", device)))
            return await sub.get(timeout=10.0) is not None

    async def uploads(self) -> Result:
        n, claim = self.args.uploads, self.args.claim_mb * MB
        chunk_size = 16 * 1024
        total = -(-claim // chunk_size)
        since = wall_ms()
        headers = upload_headers(b"\x00" * 41, MODEL, 1, 0)
        async with KafkaBus(self.kafka, client_id="floods-uploads") as bus:
            for i in range(0, n, 100):
                await asyncio.gather(*(
                    bus.publish(
                        updates_topic("h0"),
                        encode(Chunk(f"flood1-s{j}", ModelUpdate.__name__, 0, total, claim,
                                     chunk_size, bytes(16), bytes(chunk_size))),
                        key=f"flood1-d{j}".encode(), headers=headers,
                    )
                    for j in range(i, min(n, i + 100))
                ))  # fmt: skip
        await _settle(self.watch, since, "flood1-", n)
        counts = _refusals(self.watch, since, "flood1-")
        return f"refused {sum(counts.values())}/{n}: {_said(counts)}", sum(counts.values()) == n

    async def big_string(self) -> Result:
        since = wall_ms()
        msg = encode_reference(_checkin("h0", "flood2-d0", runtime_version="x" * 5 * MB))
        async with MqttBus(self.mqtt_url) as phone:
            try:
                await phone.publish(checkin_topic("h0", "flood2-d0"), msg)
            except BusError as exc:
                return f"refused by Mosquitto: {type(exc).__name__}", True
        await _settle(self.watch, since, "flood2-", 1)
        counts = _refusals(self.watch, since, "flood2-")
        return f"refused as {_said(counts)}", sum(counts.values()) == 1

    async def many_models(self) -> Result:
        since = wall_ms()
        models = tuple(f"m{i}" for i in range(100_000))
        msg = encode_reference(_checkin("h0", "flood3-d0", models=models))
        async with MqttBus(self.mqtt_url) as phone:
            answers = await phone.subscribe([task_topic("h0", "flood3-d0")])
            await phone.publish(checkin_topic("h0", "flood3-d0"), msg)
            await _settle(self.watch, since, "flood3-", 1)
            got = 0
            while await answers.get(timeout=1.0) is not None:
                got += 1
        counts = _refusals(self.watch, since, "flood3-")
        ok = sum(counts.values()) == 1 and got == 0
        return f"refused as {_said(counts)}; {got} answers sent", ok

    async def no_token(self) -> Result:
        since = wall_ms()
        failure = TrainingFailure(MODEL, 1, "flood4-d0", "h0", "oom", "", wall_ms())
        fake = encode_chunked(self._update("flood4-d1", "hmadeup", 1, 0, b"x" * 41, 10), "u4")
        async with MqttBus(self.mqtt_url) as phone:
            await phone.publish(upload_topic("h0", "flood4-d0"), encode(failure))
            for chunk in fake:
                await phone.publish(upload_topic("hmadeup", "flood4-d1"), chunk)
        await _settle(self.watch, since, "flood4-", 2)
        counts = _refusals(self.watch, since, "flood4-")
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            made = updates_topic("hmadeup") in await admin.list_topics()
        finally:
            await admin.close()
        ok = sum(counts.values()) == 2 and not made
        return f"refused as {_said(counts)}; topic for hmadeup: {made}", ok

    async def checkins(self) -> Result:
        n, seconds = self.args.checkins, 12.0
        before = len(_goals(self.watch.plans(MODEL)))  # rounds opened so far
        started = time.monotonic()
        async with MqttBus(self.mqtt_url, max_inflight=200) as phone:
            for i in range(0, n, 100):
                await asyncio.gather(*(
                    phone.publish(checkin_topic(h, d), encode(_checkin(h, d)))
                    for j in range(i, min(n, i + 100))
                    for h, d in [(HOSPITALS[j % 2], f"flood5-d{j}")]
                ))  # fmt: skip
                ahead = started + seconds * (i + 100) / n - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        took = time.monotonic() - started
        await asyncio.sleep(8.0)  # the rounds that open on what the flood left
        goals = _goals(self.watch.plans(MODEL))
        old, new = goals[: max(1, before)][-1:], goals[before:]
        seq = old + new
        grew_ok = all(b[h] <= max(1, a[h]) * GROWTH for a, b in itertools.pairwise(seq) for h in b)
        peak = {h: max(g.get(h, 0) for g in seq) for h in HOSPITALS}
        first = old[0] if old else {}
        text = f"{n} in {took:.0f}s; goals {first} -> max {peak} over {len(new)} rounds"
        return text, grew_ok and len(new) > 0

    async def examples(self) -> Result:
        """Up to 3 tries: a round may close between reading its plan and the upload arriving."""
        since, secret = wall_ms(), secret_bytes(SECRET)
        for attempt in range(3):
            plan = await self._open_plan()
            if plan is None:
                return "no open round to upload to", False
            device = f"flood6-d{attempt}"
            token = issue_token(model=MODEL, round_id=plan.round_id,
                                base_version=plan.base_version, device_id=device,
                                hospital_id="h0", expires_at_ms=plan.deadline_ms,
                                secret=secret)  # fmt: skip
            update = self._update(device, "h0", plan.round_id, plan.base_version, token, 10**9)
            headers = upload_headers(token, MODEL, plan.round_id, plan.base_version)
            async with MqttBus(self.mqtt_url) as phone:
                for chunk in encode_chunked(update, f"{device}-u"):
                    await phone.publish(upload_topic("h0", device), chunk, headers=headers)
            await _settle(self.watch, since, "flood6-", attempt + 1)
            counts = _refusals(self.watch, since, "flood6-")
            if counts.get("update.rejected:too_many_examples", 0) == 1:
                break
        return f"refused as {_said(counts)}", counts["update.rejected:too_many_examples"] == 1

    async def _open_plan(self) -> RoundPlan | None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            plans = self.watch.plans(MODEL)
            last = plans[-1] if plans else None
            if (
                last
                and last.state in ("selecting", "training")
                and last.deadline_ms - wall_ms() > 3000
            ):
                return last
            await asyncio.sleep(0.1)
        return None

    @staticmethod
    def _update(
        device: str, hospital: str, rnd: int, base: int, token: bytes, n: int
    ) -> ModelUpdate:
        # The shape is not the model's: the example count is checked before the shape.
        tensors = Tensors.from_dict({"w": np.zeros(8, np.float32)})
        return ModelUpdate(MODEL, rnd, base, device, hospital, n, 0.5, 1.0, token,
                           f"{device}-u", tensors)  # fmt: skip


def _goals(plans: list[RoundPlan]) -> list[dict[str, int]]:
    """The goals of each round, in order (a round's first plan carries them)."""
    out: dict[int, dict[str, int]] = {}
    for p in plans:
        out.setdefault(p.round_id, dict(zip(p.hospitals, p.targets, strict=True)))
    return [out[r] for r in sorted(out)]


async def run(args: argparse.Namespace, root: Path, mqtt_url: str, kafka: str) -> int:
    """Start the roles, take the idle reference, run each flood and print the table."""
    env = role_env({**SETTINGS, "FL_MQTT_URL": mqtt_url, "FL_KAFKA_BOOTSTRAP": kafka,
                    "FL_STORE_DIR": str(root / "models"), "FL_ARTIFACTS_DIR": str(root / "art"),
                    "FL_DEVICE_STORAGE": str(root / "devices")})  # fmt: skip
    argv = {"coordinator": ["coordinator"], "selector": ["selector"],
            "aggregator-h0": ["aggregator"], "aggregator-h1": ["aggregator"]}  # fmt: skip
    extra = {"aggregator-h0": {"FL_HOSPITAL": "h0"}, "aggregator-h1": {"FL_HOSPITAL": "h1"}}
    roles = {n: Role(n, argv[n], {**env, **extra.get(n, {})}, root / f"{n}.log").start()
             for n in SERVICES}  # fmt: skip
    roles["devices"] = Role("devices", ["devices"], env, root / "devices.log").start()
    ok = True
    try:
        async with Watch(kafka) as watch:
            bench = Bench(mqtt_url, kafka, watch, args)
            if await watch.wait_version(MODEL, 0, 180) is None:
                print("no round closed after start-up", file=sys.stderr)
                return 1
            with Memory({n: roles[n].pid for n in SERVICES}) as memory:
                idle = await asyncio.to_thread(memory.idle, args.idle_seconds)
                print(f"{'flood':<12} {'role':<14} {'idle MB':>8} {'peak MB':>8} "
                      f"{'growth MB':>9}  {'alive':<5}  outcome", flush=True)  # fmt: skip
                floods: list[tuple[str, Callable[[], Awaitable[Result]]]] = [
                    ("uploads", bench.uploads), ("5mb-string", bench.big_string),
                    ("100k-models", bench.many_models), ("no-token", bench.no_token),
                    ("checkins", bench.checkins), ("examples", bench.examples),
                ]  # fmt: skip
                chosen = set(args.floods.split(","))
                for name, flood in floods:
                    if name not in chosen:
                        continue
                    memory.begin()
                    outcome, right = await flood()
                    answered = await bench.answered()
                    done = wall_ms()
                    closed = await watch.wait_version(MODEL, done, 60)
                    peak = memory.end()
                    after = ("answered" if answered else "check-in NOT answered") + (
                        f", round closed {closed:.0f}s later" if closed is not None
                        else ", NO round closed in 60s"
                    )  # fmt: skip
                    right &= answered and closed is not None
                    for role in SERVICES:
                        alive = roles[role].alive
                        ok &= alive
                        text = f"{outcome}; {after}" if role == SERVICES[0] else ""
                        print(f"{name:<12} {role:<14} {idle[role]:>8.0f} {peak[role]:>8.0f} "
                              f"{peak[role] - idle[role]:>9.0f}  {'yes' if alive else 'NO':<5}"
                              f"  {text}", flush=True)  # fmt: skip
                    if not right:
                        print(f"{name}: outcome NOT as expected", flush=True)
                    ok &= right
    finally:
        for proc in reversed(list(roles.values())):
            proc.stop()
    if not ok:
        for proc in roles.values():
            print(f"--- {proc.name}\n{proc.tail()}", file=sys.stderr)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the options, start the brokers, run the floods; exit 1 on a death or bad outcome."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--uploads", type=int, default=1000, help="upload streams to open (1000)")
    p.add_argument("--claim-mb", type=int, default=100, help="MB each stream claims (100)")
    p.add_argument("--checkins", type=int, default=5000, help="fake check-ins over 12 s (5000)")
    p.add_argument("--idle-seconds", type=float, default=3.0, help="idle reference window (3)")
    p.add_argument("--floods", default="uploads,5mb-string,100k-models,no-token,checkins,examples")
    args = p.parse_args(argv)
    prepare_process("console", "error")
    with tempfile.TemporaryDirectory(prefix="floods-") as tmp:
        root = Path(tmp)
        brokers = LocalBrokers(free_port(), free_port(), root / "brokers",
                               kafka_controller_port=free_port())  # fmt: skip
        try:
            endpoints = brokers.up(timeout=120)
        except BrokerError as exc:
            print(f"cannot start local brokers: {exc}", file=sys.stderr)
            return 2
        assert endpoints.mqtt_url is not None and endpoints.kafka_bootstrap is not None
        try:
            (root / "roles").mkdir()
            return asyncio.run(run(args, root / "roles", endpoints.mqtt_url,
                                   endpoints.kafka_bootstrap))  # fmt: skip
        finally:
            brokers.down(grace=5)


if __name__ == "__main__":
    sys.exit(main())
