"""Partial aggregate: one hospital's weighted sum of updates for one round."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import check_types, finite, ids, message, non_negative
from schemas.tensors import Tensors


@message(
    version=1,
    limits={"model": L.ID, "hospital_id": L.ID, "tensors": L.TENSORS},
)
@dataclass(frozen=True, slots=True)
class PartialAggregate:
    """``tensors`` = sum over accepted updates i of ``num_examples_i * delta_i``."""

    model: str
    round_id: int
    base_version: int
    hospital_id: str
    num_updates: int
    num_examples: int
    loss_sum: float
    train_seconds_sum: float
    rejected: int
    tensors: Tensors

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "model", "hospital_id")
        non_negative(self, "round_id", "base_version", "num_updates", "num_examples", "rejected")
        finite(self, "loss_sum", "train_seconds_sum")
        non_negative(self, "train_seconds_sum")
