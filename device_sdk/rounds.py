"""One admitted round on a device: wait for the model, train, upload once, evaluate.

Every failure a device can hit in a round (an SdkError) becomes one
``TrainingFailure`` on the upload topic instead of an update. The round is
claimed in the ledger before anything is published for it, so a device never
uploads twice for a round, across restarts too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from device_sdk.context import DeviceContext, RoundOutcome
from device_sdk.errors import (
    DeadlineMissedError,
    ModelUnavailableError,
    SdkError,
    UnknownModelError,
)
from device_sdk.training import EvalResult, TrainResult
from device_sdk.wire import from_tensors, to_tensors, train_config, upload_headers
from flbus.errors import BusError
from flcore.privacy import add_gaussian_noise
from modelzoo.params import ParamManifest
from schemas import EvaluationReport, ModelUpdate, ModelVersion, Task, TrainingFailure, encode
from schemas.chunking import encode_chunked
from schemas.errors import SchemaError
from schemas.topics import eval_topic, upload_topic

if TYPE_CHECKING:
    from device_sdk.state import ModelState

T = TypeVar("T")


@dataclass(frozen=True)
class _Trained:
    result: TrainResult
    update: NDArray[np.float32]
    manifest: ParamManifest
    seconds: float  # the whole on-device job: load the base weights, train, noise
    span: tuple[int, int]  # wall-clock ms of that job


class RoundRunner:
    """Carries out tasks for one device: everything it touches comes in ``ctx``.

    ``executor`` runs training (None: the loop's default); a simulator passes
    one worker so that devices sharing a process train one at a time.
    """

    def __init__(self, ctx: DeviceContext, executor: Executor | None = None) -> None:
        self._ctx = ctx
        self._executor = executor

    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def run(self, task: Task, state: ModelState | None) -> None:
        """Do the round ``task`` admitted this device to; never raises an SdkError."""
        d = self._ctx
        log = d.log.bind(model=task.model, round=task.round_id)
        rng = d.round_rng(task.model, task.round_id)
        outcome = RoundOutcome(task.model, task.round_id, "failed")
        try:
            if state is None:
                raise UnknownModelError(f"task for model {task.model!r}, not installed here")
            if d.config.dropout > 0 and rng.random() < d.config.dropout:
                await asyncio.to_thread(
                    d.ledger.claim, task.model, task.round_id, "dropped", "", d.clock()
                )
                d.stats.dropouts += 1
                log.info("device.dropped")
                outcome = RoundOutcome(task.model, task.round_id, "dropped")
                return
            version, path = await self._await_model(task, state)
            # sqlite off the event loop: a commit can take milliseconds on slow flash.
            x, y = await asyncio.to_thread(d.store.labelled, task.model, d.now())
            async with state.lock:
                trained = await self._in_worker(self._train, state, path, version, x, y, task, rng)
                d.stats.training_spans.append(trained.span)
                seconds = trained.seconds * d.config.slowdown
                if d.config.slowdown > 1:
                    await asyncio.sleep(seconds - trained.seconds)
                if d.clock() > task.deadline_ms:
                    raise DeadlineMissedError(
                        f"trained until {d.clock()}, deadline was {task.deadline_ms}"
                    )
                if not await self._upload(task, trained, seconds, log):
                    outcome = RoundOutcome(task.model, task.round_id, "duplicate")
                    return
                outcome = RoundOutcome(
                    task.model, task.round_id, "uploaded", "", seconds, trained.result.num_examples
                )
            if trained.result.base_eval is not None:
                await self._report(task, trained.result.base_eval, log)
        except SdkError as exc:
            outcome = RoundOutcome(task.model, task.round_id, "failed", exc.reason)
            await self._fail(task, exc.reason, str(exc), log)
        except Exception as exc:  # a bug must still end the round as a visible failure
            log.exception("round.crashed")
            outcome = RoundOutcome(task.model, task.round_id, "failed", "internal_error")
            await self._fail(task, "internal_error", repr(exc), log)
        finally:
            if state is not None and state.busy_round == task.round_id:
                state.busy_round = None
            d.stats.outcomes.append(outcome)

    async def _await_model(self, task: Task, state: ModelState) -> tuple[ModelVersion, Path]:
        """The task's base version and its artifacts, waiting for them until the deadline."""
        while True:
            state.changed.clear()
            v = state.version
            if v is not None and v.version == task.base_version:
                path = state.artifact_dir_for(v)
                if path is not None:
                    return v, path
            elif v is not None and v.version > task.base_version:
                raise ModelUnavailableError(
                    f"base version {task.base_version} was superseded by {v.version}"
                )
            remaining_ms = task.deadline_ms - self._ctx.clock()
            if remaining_ms <= 0:
                have = None if v is None else v.version
                raise ModelUnavailableError(
                    f"base version {task.base_version} and its artifacts not received by the "
                    f"deadline (have version {have}, bundles {sorted(state.artifacts)})"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), min(remaining_ms / 1000, 1.0))

    def _train(
        self,
        state: ModelState,
        path: Path,
        version: ModelVersion,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        task: Task,
        rng: np.random.Generator,
    ) -> _Trained:
        """Load the base weights and train (worker thread)."""
        started, started_ms = time.perf_counter(), self._ctx.clock()
        trainer = state.training_trainer(path, self._ctx.config.ort_threads)
        manifest, flat = from_tensors(version.tensors)
        trainer.load_weights(flat, manifest)
        # The base model is scored in the training session (federated evaluation).
        result = trainer.train(x, y, train_config(task), rng, evaluate_first=True)
        update = result.update
        if task.noise_multiplier > 0:
            # Local Gaussian noise scaled to the clip bound (the sensitivity of one update).
            stddev = task.noise_multiplier * (task.clip_norm or 1.0)
            update = add_gaussian_noise(update, stddev, rng)
        seconds = time.perf_counter() - started
        return _Trained(result, update, trainer.manifest, seconds, (started_ms, self._ctx.clock()))

    async def _upload(self, task: Task, trained: _Trained, seconds: float, log: Any) -> bool:
        """Claim the round, then publish the update's chunks; False if already claimed."""
        d = self._ctx
        # Unique per upload without os.urandom (slow in some sandboxes, and a
        # per-round stream keeps runs reproducible).
        nonce = int(d.round_rng(task.model, task.round_id).integers(2**48))
        update_id = f"{d.config.device_id}-{task.model}-r{task.round_id}-{nonce:012x}"
        msg = ModelUpdate(
            model=task.model,
            round_id=task.round_id,
            base_version=task.base_version,
            device_id=d.config.device_id,
            hospital_id=d.config.hospital_id,
            num_examples=trained.result.num_examples,
            train_loss=trained.result.mean_loss,
            train_seconds=seconds,
            token=task.token,
            update_id=update_id,
            tensors=to_tensors(trained.manifest, trained.update),
        )
        chunks = encode_chunked(msg, update_id, d.config.max_chunk_bytes)
        claimed = await asyncio.to_thread(
            d.ledger.claim, task.model, task.round_id, "uploaded", update_id, d.clock()
        )
        if not claimed:
            log.warning("update.duplicate_suppressed")
            return False
        topic = upload_topic(d.config.hospital_id, d.config.device_id)
        headers = upload_headers(task)
        for data in chunks:
            await self._publish_retrying(topic, data, headers, task.deadline_ms, log)
        d.stats.uploads += 1
        d.stats.train_seconds += seconds
        log.info(
            "update.uploaded",
            update_id=update_id,
            chunks=len(chunks),
            examples=msg.num_examples,
            loss=msg.train_loss,
            train_seconds=round(seconds, 4),
        )
        return True

    async def _publish_retrying(
        self, topic: str, data: bytes, headers: Any, deadline_ms: int, log: Any
    ) -> None:
        """Publish at QoS 1, retrying bus errors with backoff until the deadline."""
        delay = 0.1
        while True:
            try:
                await self._ctx.bus.publish(topic, data, headers=headers)
                return
            except BusError as exc:
                self._ctx.stats.bus_errors += 1
                if self._ctx.clock() > deadline_ms:
                    log.warning("upload.abandoned", error=str(exc))
                    raise
                log.warning("bus.error", what="upload", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _report(self, task: Task, ev: EvalResult, log: Any) -> None:
        """Publish the base version's local loss and accuracy."""
        d = self._ctx
        if not (math.isfinite(ev.loss) and math.isfinite(ev.accuracy)):
            log.warning("eval.skipped", loss=ev.loss)
            return
        try:
            report = EvaluationReport(
                model=task.model,
                version=task.base_version,
                device_id=d.config.device_id,
                hospital_id=d.config.hospital_id,
                num_examples=ev.num_examples,
                loss=ev.loss,
                accuracy=ev.accuracy,
                at_ms=d.clock(),
            )
            topic = eval_topic(d.config.hospital_id, d.config.device_id)
            await d.bus.publish(topic, encode(report))
        except (SchemaError, BusError) as exc:
            log.warning("eval.failed", error=str(exc))
            return
        log.info("eval.reported", version=task.base_version, accuracy=ev.accuracy, loss=ev.loss)

    async def _fail(self, task: Task, reason: str, detail: str, log: Any) -> None:
        """Claim the round as failed and publish one TrainingFailure."""
        d = self._ctx
        d.stats.failures += 1
        log.warning("training.failed", reason=reason, detail=detail[:300])
        claimed = await asyncio.to_thread(
            d.ledger.claim, task.model, task.round_id, "failed", "", d.clock()
        )
        if not claimed:
            return
        failure = TrainingFailure(
            model=task.model,
            round_id=task.round_id,
            device_id=d.config.device_id,
            hospital_id=d.config.hospital_id,
            reason=reason,
            detail=detail[:1000],
            at_ms=d.clock(),
        )
        topic = upload_topic(d.config.hospital_id, d.config.device_id)
        try:
            await d.bus.publish(topic, encode(failure), headers=upload_headers(task))
        except BusError as exc:
            log.warning("bus.error", what="failure", error=str(exc))
