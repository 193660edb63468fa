"""Synthetic training: random updates of the model's size, without ONNX Runtime.

For benchmarks of the federation itself (check-ins, chunked uploads, MQTT,
Kafka, the fold): a device "trains" in the time it takes to draw a random
vector, so a round's cost is the system's, not ORT's. The update has the
base version's exact manifest (the aggregator checks shapes) and a norm
well under any clip bound. Used through ``Device(trainer_factory=...)``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from device_sdk.artifacts import read_verified_info
from device_sdk.errors import DataError, WeightsError
from device_sdk.training import TrainConfig, TrainResult
from modelzoo.params import ParamManifest

UPDATE_SCALE = 1e-4  # per-coordinate standard deviation of a synthetic update


class SyntheticTrainer:
    """Stands in for ``device_sdk.trainer.Trainer``: reads only artifacts.json."""

    def __init__(self, artifact_dir: Path, *, threads: int | None = None) -> None:
        """Read the model's manifest from the verified artifacts (``threads`` is unused)."""
        self._manifest = read_verified_info(Path(artifact_dir)).manifest

    @property
    def manifest(self) -> ParamManifest:
        """Order and shapes of the flat weight vector."""
        return self._manifest

    def load_weights(self, flat: NDArray[Any], manifest: ParamManifest | None = None) -> None:
        """Check the weights fit the model; a synthetic update does not depend on them."""
        if manifest is not None and manifest != self._manifest:
            raise WeightsError("weights manifest differs from the model's")
        if np.asarray(flat).shape != (self._manifest.total_size,):
            raise WeightsError(f"weights have shape {np.asarray(flat).shape}")

    def train(
        self,
        x: NDArray[Any],
        y: NDArray[Any],
        config: TrainConfig,
        rng: np.random.Generator,
        *,
        evaluate_first: bool = False,
    ) -> TrainResult:
        """A random float32 update of the model's size, as if trained on ``len(y)`` examples."""
        if len(y) == 0:
            raise DataError("no labelled examples to train on")
        started = time.perf_counter()
        update = rng.standard_normal(self._manifest.total_size, dtype=np.float32)
        update *= np.float32(UPDATE_SCALE)
        norm = float(np.linalg.norm(update))
        return TrainResult(
            update=update,
            num_examples=len(y),
            num_steps=1,
            mean_loss=1.0,
            train_seconds=time.perf_counter() - started,
            update_norm=norm,
            clipped=False,
        )
