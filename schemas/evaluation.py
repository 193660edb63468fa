"""Evaluation report: a device's metrics for one model version on its local data."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import check_types, finite, ids, in_range, message, non_negative


@message(
    version=1,
    limits={"model": L.ID, "device_id": L.ID, "hospital_id": L.ID},
)
@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Loss and accuracy of ``model`` at ``version`` over ``num_examples`` local examples."""

    model: str
    version: int
    device_id: str
    hospital_id: str
    num_examples: int
    loss: float
    accuracy: float
    at_ms: int

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "model", "device_id", "hospital_id")
        non_negative(self, "version", "num_examples", "at_ms")
        finite(self, "loss", "accuracy")
        in_range(self, "accuracy", 0.0, 1.0)
