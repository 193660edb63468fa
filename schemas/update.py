"""Device reports after training: a model update, or a typed training failure."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import check_types, finite, ids, message, non_empty, non_negative
from schemas.tensors import Tensors


@message(
    version=1,
    limits={
        "model": L.ID,
        "device_id": L.ID,
        "hospital_id": L.ID,
        "token": L.TOKEN,
        "update_id": L.Bound(max_bytes=L.STREAM_ID_BYTES),
        "tensors": L.TENSORS,
    },
)
@dataclass(frozen=True, slots=True)
class ModelUpdate:
    """One device's update for one round: ``tensors`` holds the delta from ``base_version``."""

    model: str
    round_id: int
    base_version: int
    device_id: str
    hospital_id: str
    num_examples: int
    train_loss: float
    train_seconds: float
    token: bytes
    update_id: str
    tensors: Tensors

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "model", "device_id", "hospital_id")
        non_negative(self, "round_id", "base_version", "num_examples")
        finite(self, "train_loss", "train_seconds")
        non_negative(self, "train_seconds")
        non_empty(self, "token", "update_id")


@message(
    version=1,
    limits={
        "model": L.ID,
        "device_id": L.ID,
        "hospital_id": L.ID,
        "reason": L.CODE,
        "detail": L.DETAIL,
    },
)
@dataclass(frozen=True, slots=True)
class TrainingFailure:
    """A device could not train for a round; ``reason`` is a short machine-readable code."""

    model: str
    round_id: int
    device_id: str
    hospital_id: str
    reason: str
    detail: str
    at_ms: int

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "model", "device_id", "hospital_id")
        non_negative(self, "round_id", "at_ms")
        non_empty(self, "reason")
