"""What a device knows about one installed model: plan, version, artifacts, round in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from device_sdk.downloads import Gate, ModelDownloads
from device_sdk.errors import ArtifactError
from device_sdk.trainer import Trainer
from device_sdk.training import TrainConfig, TrainResult
from device_sdk.wire import from_tensors
from modelzoo.params import ParamManifest
from schemas import ModelVersion, RoundPlan
from schemas.chunking import StreamDecoder, decode_stream


class RoundTrainer(Protocol):
    """What a round needs of a trainer (``Trainer``, or a simulator's stand-in)."""

    @property
    def manifest(self) -> ParamManifest:
        """Order and shapes of the flat weight vector."""

    def load_weights(self, flat: NDArray[Any], manifest: ParamManifest | None = None) -> None:
        """Replace the global weights."""

    def train(
        self,
        x: NDArray[Any],
        y: NDArray[Any],
        config: TrainConfig,
        rng: np.random.Generator,
        *,
        evaluate_first: bool = False,
    ) -> TrainResult:
        """Train from the global weights and return the update."""


TrainerFactory = Callable[..., RoundTrainer]
"""Builds the trainer of an artifacts directory: ``factory(path, threads=...)``."""


class ModelState:
    """Per-model state of a device; touched on the event loop only (trainers excepted)."""

    def __init__(
        self,
        model: str,
        artifact_root: Path,
        gate: Gate,
        trainer_factory: TrainerFactory = Trainer,
        decoder: StreamDecoder = decode_stream,
    ) -> None:
        self.model = model
        self._trainer_factory = trainer_factory
        self.downloads = ModelDownloads(model, artifact_root, gate, decoder=decoder)
        self.plan: RoundPlan | None = None
        self.version: ModelVersion | None = None
        self.artifacts: dict[str, Path] = {}  # bundle digest -> installed directory
        self.latest_digest: str | None = None
        self.retry_at_ms = 0
        self.retry_round: int | None = None  # the round ``retry_at_ms`` was given for
        self.pending_checkin: tuple[int, int] | None = None  # (round_id, sent_at_ms)
        self.busy_round: int | None = None
        self.changed = asyncio.Event()  # a version or bundle arrived
        self.lock = asyncio.Lock()  # one training/evaluation at a time per model
        self._trainers: dict[Path, RoundTrainer] = {}
        self._serving: tuple[Path, int, Trainer] | None = None

    def adopt_plan(self, plan: RoundPlan) -> None:
        """Take a (verified) plan; a newer round lifts a wait the selector set for an older one.

        Every "come back at" answer is about one round (in progress, no draw, checked in
        already); a device kept waiting for round N's deadline would miss round N+1 when
        N closes early, so it may check in once the next round opens (the selector's rate
        limit is per round too).
        """
        self.plan = plan
        if self.retry_round is not None and plan.round_id > self.retry_round:
            self.retry_at_ms, self.retry_round = 0, None

    def told_to_wait(self, retry_at_ms: int) -> None:
        """The selector answered the pending check-in (if any) with "come back at"."""
        pending = self.pending_checkin
        if pending is not None:
            self.retry_round = pending[0]
        elif self.plan is not None:
            self.retry_round = self.plan.round_id
        self.retry_at_ms = max(self.retry_at_ms, retry_at_ms)
        self.pending_checkin = None

    def on_version(self, version: ModelVersion | None) -> None:
        """Keep a newly reassembled version unless it is older than the one held."""
        if version is None:
            return
        if self.version is None or version.version >= self.version.version:
            self.version = version
            self.changed.set()

    def on_bundle(self, installed: tuple[str, Path] | None) -> None:
        """Remember an installed artifact bundle."""
        if installed is None:
            return
        digest, path = installed
        self.artifacts[digest] = path
        self.latest_digest = digest
        self.changed.set()

    def artifact_dir_for(self, version: ModelVersion) -> Path | None:
        """The installed artifacts ``version`` was built for (latest if it names none)."""
        if version.artifact_digest:
            return self.artifacts.get(version.artifact_digest)
        return self.artifacts.get(self.latest_digest) if self.latest_digest else None

    def training_trainer(self, path: Path, threads: int | None) -> RoundTrainer:
        """The trainer used by rounds for the artifacts at ``path`` (the latest one is cached)."""
        trainer = self._trainers.get(path)
        if trainer is None:
            # Only the newest artifacts are kept: a trainer per bundle ever installed would grow.
            trainer = self._trainer_factory(path, threads=threads)
            self._trainers = {path: trainer}
        return trainer

    def serving_trainer(self, threads: int | None) -> Trainer:
        """A trainer holding the newest version, for ``predict`` (separate from training)."""
        version = self.version
        path = self.artifact_dir_for(version) if version is not None else None
        if version is None or path is None:
            raise ArtifactError(f"no model version and artifacts of {self.model!r} received yet")
        if self._serving is not None and self._serving[:2] == (path, version.version):
            return self._serving[2]
        trainer = Trainer(path, threads=threads)
        manifest, flat = from_tensors(version.tensors)
        trainer.load_weights(flat, manifest)
        self._serving = (path, version.version, trainer)
        return trainer
