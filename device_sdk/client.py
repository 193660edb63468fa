"""The device: ``Device`` is what an app embeds, the round protocol over a PubSubBus.

A whole app is ``examples/sdk_app.py`` (the README's example); the protocol is
docs/rounds.md section 3 and docs/protocol.md section 5. ``Device`` owns the
local storage (examples, round ledger) and each installed model's state, and
composes the parts it hands one ``DeviceContext``: ``routes`` (which topics it
follows), ``CheckIns`` (when it may check in) and ``RoundRunner`` (an admitted
round: train, upload once, evaluate).

One receive loop reads every subscribed topic and never blocks; a round runs as
its own asyncio task and trains in a worker thread (an executor the caller may
pass, so a simulator can serialise training). The bus reconnects by itself;
the device logs bus errors and retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Executor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from device_sdk.checkin import CheckIns
from device_sdk.context import DeviceConfig, DeviceContext, DeviceStats
from device_sdk.eligibility import ConditionsProvider, EligibilityPolicy
from device_sdk.errors import UnknownModelError
from device_sdk.ledger import RoundLedger
from device_sdk.rounds import RoundRunner
from device_sdk.routes import route, topic_filters
from device_sdk.state import ModelState, TrainerFactory
from device_sdk.store import ExampleStore
from device_sdk.trainer import Trainer
from device_sdk.trust import ControlGate
from flbus.errors import BusClosedError, BusError
from flbus.port import PubSubBus, Record, Subscription
from flcore.signing import TrustedKeys
from flproc.clock import wall_ms
from modelzoo.registry import get_spec
from schemas import RetryAfter, RoundPlan, Task, decode
from schemas.chunking import StreamDecoder
from schemas.chunking import decode_stream as plain_stream_decode
from schemas.errors import SchemaError

log = structlog.get_logger(__name__)

__all__ = ["BroadcastDecoder", "Device", "DeviceConfig", "DeviceStats", "wall_ms"]


BroadcastDecoder = Callable[[bytes], Any]
"""Decodes a retained broadcast (a round plan) from its bytes; raises SchemaError if bad."""


class Device:
    """One device: local examples, eligibility, and the round protocol over a PubSubBus.

    ``coordinator_key`` pins the coordinator's public key(s): the device adopts
    only plans, model versions and artifact bundles signed by it, and never an
    older one than it adopted (``device_sdk.trust``); there is no default, a
    device that trusted anything would follow a forged plan.
    ``decode_broadcast`` decodes the round plans every device of a model receives;
    the default is plain ``schemas.decode``. A simulator running many devices in
    one process passes a shared cache (``flsim.population``), and likewise a
    ``decode_stream`` that decodes each reassembled version or bundle once.
    """

    def __init__(
        self,
        config: DeviceConfig,
        bus: PubSubBus,
        *,
        coordinator_key: TrustedKeys,
        conditions: ConditionsProvider,
        policy: EligibilityPolicy | None = None,
        clock: Callable[[], int] = wall_ms,
        conditions_clock: Callable[[], datetime] | None = None,
        seed: int = 0,
        executor: Executor | None = None,
        feature_widths: dict[str, int] | None = None,
        decode_broadcast: BroadcastDecoder = decode,
        decode_stream: StreamDecoder = plain_stream_decode,
        store: ExampleStore | None = None,
        ledger: RoundLedger | None = None,
        trainer_factory: TrainerFactory = Trainer,
    ) -> None:
        """Open the device's storage; nothing touches the bus before ``run``.

        ``store`` and ``ledger`` default to sqlite files under ``storage_dir``; a
        simulator running hundreds of devices per process passes in-memory ones
        (``":memory:"``), which hold no file descriptor. ``trainer_factory``
        builds the trainer of an artifacts directory (a simulator may pass one
        that skips ONNX Runtime).
        """
        self.config = config
        self.bus = bus
        self._clock = clock
        self._decode_broadcast = decode_broadcast
        self.stats = DeviceStats()
        root = Path(config.storage_dir)
        root.mkdir(parents=True, exist_ok=True)
        widths = feature_widths or {m: get_spec(m).feature_width for m in config.models}
        self.store = store or ExampleStore(root / "examples.sqlite", widths)
        self.ledger = ledger or RoundLedger(root / "rounds.sqlite")
        self._log = log.bind(device=config.device_id, hospital=config.hospital_id)
        self._gate = ControlGate(
            coordinator_key, self.ledger, self.stats.control_refused, self._log
        )
        artifacts = config.artifact_dir or root / "artifacts"
        self._models = {
            m: ModelState(m, artifacts, self._gate.admit, trainer_factory, decode_stream)
            for m in config.models
        }
        self._ctx = DeviceContext(
            config, bus, self.store, self.ledger, self.stats, clock, seed, self._log
        )
        self._checkins = CheckIns(
            self._ctx,
            conditions,
            policy or EligibilityPolicy(),
            conditions_clock or self._ctx.now,
        )
        self._runner = RoundRunner(self._ctx, executor)
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
        """Predicted classes from the newest verified (coordinator-signed) model version held."""
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

    async def run(self, stop: asyncio.Event, *, tick: bool = True) -> None:
        """Follow plans, check in, and run rounds until ``stop`` is set.

        Without ``tick`` the caller calls :meth:`tick` every poll interval (a
        simulator ticks all its devices from one task instead of one timer each).
        """
        self._log.info("device.started", models=list(self.config.models))
        tasks = [asyncio.create_task(self._receive_forever(stop))]
        if tick:
            tasks.append(asyncio.create_task(self._tick_forever(stop)))
        try:
            await stop.wait()
        finally:
            for task in (*tasks, *self._jobs):
                task.cancel()
            await asyncio.gather(*tasks, *self._jobs, return_exceptions=True)
            self._log.info("device.stopped", **self._summary())

    def _summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "uploads": s.uploads,
            "failures": s.failures,
            "dropouts": s.dropouts,
            "control_refused": dict(s.control_refused),
        }

    def topic_filters(self) -> list[str]:
        """Every MQTT topic filter the device subscribes to."""
        return topic_filters(self.config.hospital_id, self.config.device_id, self.config.models)

    async def _receive_forever(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            sub: Subscription | None = None
            try:
                sub = await self.bus.subscribe(self.topic_filters())
                self.subscribed.set()
                delay = 0.1
                while not stop.is_set():
                    # No timeout: ``run`` cancels this task on stop. A timed get
                    # woke every device every poll interval for nothing (1,000
                    # simulated devices: 20,000 timers a second at 50 ms).
                    record = await sub.get()
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
            await self.tick()

    async def tick(self) -> None:
        """Forget stalled downloads; check in if a deferred check-in is now due."""
        now = self._clock()
        for state in self._models.values():
            state.downloads.expire(now)
            await self._checkins.maybe_check_in(state)

    def _dispatch(self, record: Record) -> None:
        if not record.value:
            return  # a retained message being cleared
        cfg = self.config
        where = route(record.topic, cfg.hospital_id, cfg.device_id, tuple(self._models))
        if where is None:
            return
        if where.kind == "task":
            self._on_task_topic(record.value)
            return
        state, now = self._models[where.model], self._clock()
        if where.kind == "plan":
            self._on_plan(state, record.value)
        elif where.kind == "version":
            state.on_version(state.downloads.version_chunk(record.value, now))
        else:
            state.on_bundle(state.downloads.bundle_chunk(record.value, now))

    def _decode(self, data: bytes, what: str) -> Any | None:
        try:
            return decode(data)
        except SchemaError as exc:
            self._log.warning("message.rejected", what=what, error=str(exc))
            return None

    def _on_plan(self, state: ModelState, data: bytes) -> None:
        try:
            plan = self._decode_broadcast(data)
        except SchemaError as exc:
            self._log.warning("message.rejected", what="plan", error=str(exc))
            return
        if not isinstance(plan, RoundPlan) or plan.model != state.model:
            return
        if self._gate.admit(plan, "plan", state.model):  # signed, and not older than ours
            state.adopt_plan(plan)
            self._spawn(self._checkins.maybe_check_in(state))

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
        state.told_to_wait(msg.retry_at_ms)
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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        job = asyncio.create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # -- state -------------------------------------------------------------------

    def _state(self, model: str) -> ModelState:
        state = self._models.get(model)
        if state is None:
            raise UnknownModelError(f"model {model!r} is not installed on this device")
        return state

    def _now_dt(self) -> datetime:
        return self._ctx.now()

    def round_rng(self, model: str, round_id: int) -> np.random.Generator:
        """The random stream of one round (dropout draw, batch order, noise): reproducible."""
        return self._ctx.round_rng(model, round_id)

    def check_in_blocker(self, state: ModelState) -> str | None:
        """Why the device must not check in for ``state``'s plan now, or None if it may."""
        return self._checkins.blocker(state)

    @property
    def clock(self) -> Callable[[], int]:
        """The device's millisecond clock."""
        return self._clock

    def model_state(self, model: str) -> ModelState | None:
        """Download and round state of one installed model (None if not installed)."""
        return self._models.get(model)

    def installed(self) -> Sequence[str]:
        """Installed model names."""
        return tuple(self._models)
