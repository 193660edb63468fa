"""Selector answers to a check-in: a training task, or "come back at" (selector -> device)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import check_types, finite, ids, message, non_empty, non_negative, positive


@message(
    version=1,
    limits={"device_id": L.ID, "hospital_id": L.ID, "model": L.ID, "token": L.TOKEN},
)
@dataclass(frozen=True, slots=True)
class Task:
    """Admission into a round: what to train and how; ``token`` must be echoed back."""

    device_id: str
    hospital_id: str
    model: str
    round_id: int
    base_version: int
    local_epochs: int
    max_steps: int  # 0 = no limit
    batch_size: int
    learning_rate: float
    clip_norm: float  # 0 = clipping off
    noise_multiplier: float
    deadline_ms: int
    token: bytes  # opaque to the device
    issued_at_ms: int

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "device_id", "hospital_id", "model")
        non_negative(self, "round_id", "base_version", "max_steps", "deadline_ms", "issued_at_ms")
        positive(self, "local_epochs", "batch_size")
        finite(self, "learning_rate", "clip_norm", "noise_multiplier")
        positive(self, "learning_rate")
        non_negative(self, "clip_norm", "noise_multiplier")
        non_empty(self, "token")


@message(
    version=1,
    limits={"device_id": L.ID, "hospital_id": L.ID, "model": L.ID, "reason": L.CODE},
)
@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Not admitted now: check in again no earlier than ``retry_at_ms`` (pace steering)."""

    device_id: str
    hospital_id: str
    model: str
    retry_at_ms: int
    reason: str

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "device_id", "hospital_id", "model")
        non_negative(self, "retry_at_ms")
        non_empty(self, "reason")
