"""What a training run takes and gives back, and update clipping: pure, no ORT."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one local training run, as a task carries them."""

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 0.05
    optimizer: str = "sgd"
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 when set")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be > 0")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError("clip_norm must be > 0 when set")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of local training: the update to upload and what it was computed from."""

    update: F32
    num_examples: int
    num_steps: int
    mean_loss: float
    train_seconds: float
    update_norm: float
    clipped: bool
    base_eval: EvalResult | None = None  # the global weights on the same examples, if asked


@dataclass(frozen=True)
class EvalResult:
    """Loss and accuracy of the global weights on local labelled examples."""

    loss: float
    accuracy: float
    num_examples: int


def clip_to_norm(update: F32, bound: float | None) -> tuple[F32, float, bool]:
    """Scale ``update`` down to L2 norm ``bound``; returns (update, original norm, clipped)."""
    norm = float(np.linalg.norm(update.astype(np.float64)))
    if bound is None or norm <= bound:
        return update, norm, False
    return (update * np.float32(bound / norm)).astype(np.float32), norm, True
