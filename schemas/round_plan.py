"""Round plan: the coordinator's published configuration of one round of one model."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import (
    check_types,
    finite,
    ids,
    in_range,
    message,
    non_empty,
    non_negative,
    one_of,
    positive,
    same_length,
)
from schemas.errors import ValidationError

AGGREGATIONS = ("fedavg", "median", "trimmed_mean")  # flcore.robust.RULES (schemas imports no core)
MAX_TRIM_FRACTION = 0.45  # flcore.robust.MAX_TRIM_FRACTION


@message(
    version=2,
    limits={
        "model": L.ID,
        "state": L.CODE,
        "hospitals": L.Bound(max_items=L.MAX_HOSPITALS, max_bytes=L.ID_BYTES),
        "targets": L.Bound(max_items=L.MAX_HOSPITALS),
        "reason": L.DETAIL,
        "aggregation": L.CODE,
        "signature": L.SIGNATURE,
    },
)
@dataclass(frozen=True, slots=True)
class RoundPlan:
    """Round configuration; ``targets[i]`` is the number of updates wanted from ``hospitals[i]``.

    Version 2 added ``aggregation`` (``fedavg``, ``median`` or ``trimmed_mean``:
    how each hospital combines its devices' updates, and the coordinator the
    hospitals' partials) and ``trim_fraction`` (share dropped from each side
    by ``trimmed_mean``, at most 0.45).
    """

    model: str
    round_id: int
    base_version: int
    state: str
    local_epochs: int
    max_steps: int
    batch_size: int
    learning_rate: float
    clip_norm: float
    noise_multiplier: float
    hospitals: tuple[str, ...]
    targets: tuple[int, ...]
    admission_probability: float
    over_selection: float
    min_fraction: float
    opened_at_ms: int
    deadline_ms: int
    reason: str
    aggregation: str = "fedavg"
    trim_fraction: float = 0.0
    signature: bytes = b""  # by the coordinator (flcore.signing); empty: unsigned

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "model", "hospitals")
        if len(set(self.hospitals)) != len(self.hospitals):
            raise ValidationError("hospitals", "must be unique", "RoundPlan")
        same_length(self, "hospitals", "targets")
        non_empty(self, "state")
        non_negative(self, "round_id", "base_version", "max_steps", "opened_at_ms", "deadline_ms")
        positive(self, "local_epochs", "batch_size")
        for t in self.targets:
            if t < 0:
                raise ValidationError("targets", f"must be >= 0, got {t}", "RoundPlan")
        finite(
            self,
            "learning_rate",
            "clip_norm",
            "noise_multiplier",
            "admission_probability",
            "over_selection",
            "min_fraction",
        )
        positive(self, "learning_rate")
        non_negative(self, "clip_norm", "noise_multiplier", "over_selection")
        in_range(self, "admission_probability", 0.0, 1.0)
        in_range(self, "min_fraction", 0.0, 1.0)
        one_of(self, "aggregation", AGGREGATIONS)
        finite(self, "trim_fraction")
        in_range(self, "trim_fraction", 0.0, MAX_TRIM_FRACTION)
