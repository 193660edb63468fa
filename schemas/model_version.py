"""Model version: one entry of the model registry, with its weights."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import check_types, finite, ids, message, non_negative, same_length
from schemas.errors import ValidationError
from schemas.tensors import Tensors


@message(
    version=2,
    limits={
        "model": L.ID,
        "metric_names": L.Bound(max_items=L.MAX_METRICS, max_bytes=L.CODE_BYTES),
        "metric_values": L.Bound(max_items=L.MAX_METRICS),
        "artifact_digest": L.CODE,
        "tensors": L.TENSORS,
        "signature": L.SIGNATURE,
    },
)
@dataclass(frozen=True, slots=True)
class ModelVersion:
    """Weights and lineage of a model version; ``parent_version``/``round_id`` are -1 for none."""

    model: str
    version: int
    parent_version: int
    round_id: int
    created_at_ms: int
    metric_names: tuple[str, ...]
    metric_values: tuple[float, ...]
    artifact_digest: str
    tensors: Tensors
    signature: bytes = b""  # by the coordinator (flcore.signing); empty: unsigned

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "model")
        non_negative(self, "version", "created_at_ms")
        for name in ("parent_version", "round_id"):
            if getattr(self, name) < -1:
                raise ValidationError(name, "must be >= -1 (-1 = none)", "ModelVersion")
        same_length(self, "metric_names", "metric_values")
        finite(self, "metric_values")
