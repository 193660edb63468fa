"""Pure adapters between the SDK's types and the wire: tensors, task config, upload headers."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from device_sdk.errors import WeightsError
from device_sdk.training import TrainConfig
from flbus.port import Headers
from modelzoo.params import ParamManifest
from schemas import Task, Tensors, TensorSpec, headers
from schemas.errors import ValidationError


def to_tensors(manifest: ParamManifest, flat: NDArray[np.float32]) -> Tensors:
    """Wrap a flat vector laid out by ``manifest`` as wire Tensors (no copy for float32)."""
    vec = np.ascontiguousarray(flat, dtype=np.float32)
    try:
        return Tensors(tuple(TensorSpec(e.name, e.shape) for e in manifest.entries), vec)
    except ValidationError as exc:
        raise WeightsError(f"vector does not fit the manifest: {exc}") from exc


def from_tensors(tensors: Tensors) -> tuple[ParamManifest, NDArray[np.float32]]:
    """The manifest and flat vector of wire Tensors; WeightsError if names repeat."""
    try:
        manifest = ParamManifest.of((s.name, s.shape) for s in tensors.manifest)
    except ValueError as exc:  # ManifestError is a ValueError
        raise WeightsError(f"bad tensor manifest: {exc}") from exc
    return manifest, np.asarray(tensors.flat, dtype=np.float32)


def train_config(task: Task, optimizer: str = "sgd") -> TrainConfig:
    """The local training run a task asks for (0 means "off" for max_steps and clip_norm)."""
    return TrainConfig(
        epochs=task.local_epochs,
        max_steps=task.max_steps or None,
        batch_size=task.batch_size,
        learning_rate=task.learning_rate,
        optimizer=optimizer,
        clip_norm=task.clip_norm or None,
    )


def upload_headers(task: Task) -> Headers:
    """Headers on every upload chunk: the task's claims (format: :mod:`schemas.headers`)."""
    return headers.upload_headers(task.token, task.model, task.round_id, task.base_version)
