"""The device's MQTT side: ``Device`` checks in, trains on a task, uploads, evaluates.

What an app embeds (see docs/rounds.md section 3 and docs/protocol.md section 5)::

    bus = MqttBus(url, client_id=device_id)          # or a MemoryPubSub
    await bus.start()
    device = Device(DeviceConfig("d0", "h0", ("digits_mlp",), Path("state")), bus,
                    conditions=provider)
    device.record_prediction("ex1", features, 3, model="digits_mlp")
    device.attach_label("ex1", 3)
    await device.run(stop)                            # until stop is set

One receive loop reads every subscribed topic and never blocks; a round runs as
its own asyncio task and trains in a worker thread (an executor the caller may
pass, so a simulator can serialise training). The bus reconnects by itself;
the device logs bus errors and retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from device_sdk.eligibility import ConditionsProvider, EligibilityPolicy
from device_sdk.errors import SdkError, UnknownModelError
from device_sdk.ledger import RoundLedger
from device_sdk.rounds import RoundOutcome, RoundRunner
from device_sdk.state import ModelState
from device_sdk.store import ExampleStore
from flbus.errors import BusClosedError, BusError
from flbus.port import PubSubBus, Record, Subscription
from flproc.clock import wall_ms
from modelzoo.registry import get_spec
from schemas import CheckIn, RetryAfter, RoundPlan, Task, decode
from schemas.errors import SchemaError
from schemas.topics import (
    MQTT_ROOT,
    checkin_topic,
    model_manifest_topic,
    plan_topic,
    task_topic,
)

log = structlog.get_logger(__name__)

SDK_VERSION = "0.1.0"
SELECTING = "selecting"


def model_chunks_prefix(model: str) -> str:
    """Prefix of the retained ``chunks/<seq>`` topics of a model version."""
    return model_manifest_topic(model).rsplit("/", 1)[0] + "/chunks/"


def artifact_prefix(model: str) -> str:
    """Prefix of the retained artifact bundle chunk topics of ``model``."""
    return f"{MQTT_ROOT}/models/{model}/artifacts/0/bundle/"


@dataclass(frozen=True)
class DeviceConfig:
    """Identity, installed models, storage and simulation knobs of one device."""

    device_id: str
    hospital_id: str
    models: tuple[str, ...]
    storage_dir: Path
    dropout: float = 0.0  # probability of vanishing between admission and upload
    slowdown: float = 1.0  # >1 stretches training time (a slower phone)
    ort_threads: int | None = 1
    poll_interval_s: float = 0.25
    checkin_timeout_ms: int = 30_000  # check in again if the selector never answered
    max_chunk_bytes: int = 512 * 1024

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {self.dropout}")
        if self.slowdown < 1.0:
            raise ValueError(f"slowdown must be >= 1, got {self.slowdown}")


@dataclass
class DeviceStats:
    """What a device did, for the simulator's report."""

    checkins: int = 0
    tasks: int = 0
    retries: int = 0
    uploads: int = 0
    failures: int = 0
    dropouts: int = 0
    train_seconds: float = 0.0
    bus_errors: int = 0
    outcomes: list[RoundOutcome] = field(default_factory=list)
    # (start_ms, end_ms) of every on-device training job, to tell training from waiting.
    training_spans: list[tuple[int, int]] = field(default_factory=list)


class Device:
    """One device: local examples, eligibility, and the round protocol over a PubSubBus."""

    def __init__(
        self,
        config: DeviceConfig,
        bus: PubSubBus,
        *,
        conditions: ConditionsProvider,
        policy: EligibilityPolicy | None = None,
        clock: Callable[[], int] = wall_ms,
        conditions_clock: Callable[[], datetime] | None = None,
        seed: int = 0,
        executor: Executor | None = None,
        feature_widths: dict[str, int] | None = None,
    ) -> None:
        """Open the device's storage; nothing touches the bus before ``run``."""
        self.config = config
        self.bus = bus
        self._conditions = conditions
        self._policy = policy or EligibilityPolicy()
        self._clock = clock
        self._conditions_clock = conditions_clock or (lambda: self._now_dt())
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self.stats = DeviceStats()
        root = Path(config.storage_dir)
        root.mkdir(parents=True, exist_ok=True)
        widths = feature_widths or {m: get_spec(m).feature_width for m in config.models}
        self.store = ExampleStore(root / "examples.sqlite", widths)
        self.ledger = RoundLedger(root / "rounds.sqlite")
        self._models = {m: ModelState(m, root / "artifacts") for m in config.models}
        self._log = log.bind(device=config.device_id, hospital=config.hospital_id)
        self._runner = RoundRunner(self, executor)
        self._jobs: set[asyncio.Task[None]] = set()
        self.subscribed = asyncio.Event()  # set while the device's subscription is live

    # -- app-facing API ---------------------------------------------------------

    def record_prediction(
        self,
        example_id: str,
        features: NDArray[Any],
        prediction: int,
        at: datetime | None = None,
        *,
        model: str,
    ) -> None:
        """Keep what ``model`` saw and predicted, to train on once a label arrives."""
        when = at or self._now_dt()
        self.store.record_prediction(example_id, features, prediction, when, model=model)

    def attach_label(self, example_id: str, label: int, at: datetime | None = None) -> int:
        """Attach a (late) label to an example; returns how many records it labelled."""
        return self.store.attach_label(example_id, label, at or self._now_dt())

    def predict(self, model: str, x: NDArray[Any]) -> NDArray[np.int64]:
        """Predicted classes from the newest model version this device has."""
        state = self._state(model)
        trainer = state.serving_trainer(self.config.ort_threads)
        return trainer.predict(x)

    @property
    def models(self) -> tuple[str, ...]:
        """Installed model names."""
        return self.config.models

    def close(self) -> None:
        """Close the local databases."""
        self.store.close()
        self.ledger.close()

    # -- the run loop -----------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow plans, check in, and run rounds until ``stop`` is set."""
        self._log.info("device.started", models=list(self.config.models))
        receiver = asyncio.create_task(self._receive_forever(stop))
        ticker = asyncio.create_task(self._tick_forever(stop))
        try:
            await stop.wait()
        finally:
            for task in (receiver, ticker, *self._jobs):
                task.cancel()
            await asyncio.gather(receiver, ticker, *self._jobs, return_exceptions=True)
            self._log.info("device.stopped", **self._summary())

    def _summary(self) -> dict[str, Any]:
        s = self.stats
        return {"uploads": s.uploads, "failures": s.failures, "dropouts": s.dropouts}

    def topic_filters(self) -> list[str]:
        """Every MQTT topic filter the device subscribes to."""
        filters = [task_topic(self.config.hospital_id, self.config.device_id)]
        for m in self.config.models:
            filters += [
                plan_topic(m),
                model_manifest_topic(m),
                model_chunks_prefix(m) + "+",
                artifact_prefix(m) + "+",
            ]
        return filters

    async def _receive_forever(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            sub: Subscription | None = None
            try:
                sub = await self.bus.subscribe(self.topic_filters())
                self.subscribed.set()
                delay = 0.1
                while not stop.is_set():
                    record = await sub.get(self.config.poll_interval_s)
                    if record is not None:
                        self._dispatch(record)
            except (BusError, BusClosedError) as exc:
                self.subscribed.clear()
                self.stats.bus_errors += 1
                self._log.warning("bus.error", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if sub is not None:
                    with contextlib.suppress(BusError):
                        await sub.close()

    async def _tick_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.config.poll_interval_s)
            now = self._clock()
            for state in self._models.values():
                state.downloads.expire(now)
                await self._maybe_check_in(state)

    def _dispatch(self, record: Record) -> None:
        topic, now = record.topic, self._clock()
        if not record.value:
            return  # a retained message being cleared
        if topic == task_topic(self.config.hospital_id, self.config.device_id):
            self._on_task_topic(record.value)
            return
        for m, state in self._models.items():
            if topic == plan_topic(m):
                self._on_plan(state, record.value)
            elif topic == model_manifest_topic(m) or topic.startswith(model_chunks_prefix(m)):
                state.on_version(state.downloads.version_chunk(record.value, now))
            elif topic.startswith(artifact_prefix(m)):
                state.on_bundle(state.downloads.bundle_chunk(record.value, now))
            else:
                continue
            return

    def _decode(self, data: bytes, what: str) -> Any | None:
        try:
            return decode(data)
        except SchemaError as exc:
            self._log.warning("message.rejected", what=what, error=str(exc))
            return None

    def _on_plan(self, state: ModelState, data: bytes) -> None:
        try:
            plan = _decode_shared(data)
        except SchemaError as exc:
            self._log.warning("message.rejected", what="plan", error=str(exc))
            return
        if not isinstance(plan, RoundPlan) or plan.model != state.model:
            return
        if state.plan is None or plan.round_id >= state.plan.round_id:
            state.plan = plan
            self._spawn(self._maybe_check_in(state))

    def _on_task_topic(self, data: bytes) -> None:
        msg = self._decode(data, "task")
        if isinstance(msg, RetryAfter):
            self._on_retry(msg)
        elif isinstance(msg, Task):
            self._on_task(msg)
        elif msg is not None:
            self._log.warning("message.rejected", what="task", got=type(msg).__name__)

    def _on_retry(self, msg: RetryAfter) -> None:
        self.stats.retries += 1
        state = self._models.get(msg.model)
        if state is None:
            return
        state.retry_at_ms = max(state.retry_at_ms, msg.retry_at_ms)
        state.pending_checkin = None
        self._log.info(
            "checkin.deferred", model=msg.model, retry_at_ms=msg.retry_at_ms, reason=msg.reason
        )

    def _on_task(self, task: Task) -> None:
        ids = (task.hospital_id, task.device_id)
        if ids != (self.config.hospital_id, self.config.device_id):
            self._log.warning("task.rejected", reason="not_for_me", task_for=list(ids))
            return
        state = self._models.get(task.model)
        if self.ledger.has(task.model, task.round_id):
            self._log.info("task.duplicate", model=task.model, round=task.round_id)
            return
        if state is not None:
            if state.busy_round == task.round_id:
                return  # QoS 1 redelivery of the task we are working on
            state.busy_round = task.round_id
            state.pending_checkin = None
        self.stats.tasks += 1
        self._log.info(
            "task.received",
            model=task.model,
            round=task.round_id,
            base_version=task.base_version,
            deadline_ms=task.deadline_ms,
        )
        self._spawn(self._runner.run(task, state))

    def _spawn(self, coro: Any) -> None:
        job = asyncio.create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # -- check-in -----------------------------------------------------------------

    def _state(self, model: str) -> ModelState:
        state = self._models.get(model)
        if state is None:
            raise UnknownModelError(f"model {model!r} is not installed on this device")
        return state

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self._clock() / 1000, UTC)

    def round_rng(self, model: str, round_id: int) -> np.random.Generator:
        """The random stream of one round (dropout draw, batch order, noise): reproducible."""
        return np.random.default_rng((self._seed, zlib.crc32(model.encode()), round_id))

    def check_in_blocker(self, state: ModelState) -> str | None:
        """Why the device must not check in for ``state``'s plan now, or None if it may."""
        plan, now = state.plan, self._clock()
        if plan is None or plan.state != SELECTING:
            return "no_selecting_plan"
        if plan.deadline_ms and now >= plan.deadline_ms:
            return "plan_expired"
        if plan.hospitals and self.config.hospital_id not in plan.hospitals:
            return "hospital_not_in_plan"
        if state.busy_round is not None:
            return "busy"
        if now < state.retry_at_ms:
            return "retry_later"
        pending = state.pending_checkin
        if (
            pending is not None
            and pending[0] == plan.round_id
            and now - pending[1] < self.config.checkin_timeout_ms
        ):
            return "awaiting_answer"
        if self.ledger.has(state.model, plan.round_id):
            return "already_taken_part"
        if self.store.counts(state.model, self._now_dt()).labelled == 0:
            return "no_labelled_examples"
        decision = self._policy.check(self._conditions.conditions(self._conditions_clock()))
        if not decision.eligible:
            return "ineligible:" + ",".join(decision.reasons)
        return None

    async def _maybe_check_in(self, state: ModelState) -> None:
        try:
            blocker = self.check_in_blocker(state)
        except SdkError as exc:
            self._log.warning("checkin.skipped", model=state.model, error=str(exc))
            return
        if blocker is not None or state.plan is None:
            return
        c = self._conditions.conditions(self._conditions_clock())
        msg = CheckIn(
            device_id=self.config.device_id,
            hospital_id=self.config.hospital_id,
            models=(state.model,),
            runtime_version=_runtime_version(),
            sdk_version=SDK_VERSION,
            charging=c.charging,
            unmetered=c.unmetered_network,
            idle=c.idle,
            battery_pct=float(min(100.0, max(0.0, c.battery_level * 100))),
            free_memory_mb=max(0, int(c.free_memory_mb)),
            sent_at_ms=self._clock(),
        )
        state.pending_checkin = (state.plan.round_id, msg.sent_at_ms)
        try:
            await self.publish(checkin_topic(self.config.hospital_id, self.config.device_id), msg)
        except BusError as exc:
            state.pending_checkin = None
            self.stats.bus_errors += 1
            self._log.warning("bus.error", what="checkin", error=str(exc))
            return
        self.stats.checkins += 1
        self._log.info("checkin.sent", model=state.model, round=state.plan.round_id)

    async def publish(self, topic: str, msg: Any) -> None:
        """Encode and publish one (small) message at QoS 1."""
        from schemas import encode

        await self.bus.publish(topic, encode(msg))

    @property
    def clock(self) -> Callable[[], int]:
        """The device's millisecond clock."""
        return self._clock

    @property
    def log(self) -> Any:
        """The device's bound logger."""
        return self._log

    def model_state(self, model: str) -> ModelState | None:
        """Download and round state of one installed model (None if not installed)."""
        return self._models.get(model)

    def installed(self) -> Sequence[str]:
        """Installed model names."""
        return tuple(self._models)


@functools.lru_cache(maxsize=64)
def _decode_shared(data: bytes) -> Any:
    """Decode a retained broadcast (a plan) once per process: simulated devices share it.

    Safe because decoded messages are frozen; a bad payload raises each time.
    """
    return decode(data)


def _runtime_version() -> str:
    import onnxruntime

    return f"onnxruntime-{onnxruntime.__version__}"
