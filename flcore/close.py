"""The close step: a closed round's partials and its base version become the next version.

Pure: it makes everything of the new version that needs neither ONNX Runtime
nor storage — the next weights (master aggregation, then the server
optimizer), the optimizer's new state, the training metrics the partials
carry, and the lineage (number, parent, round, creation time). Time and
randomness come in as arguments. The coordinator's shell then exports the
ONNX model, scores it and stores it, off its event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flcore.errors import NonFiniteVersion
from flcore.master import PartialSum, combine
from flcore.server_opt import ServerOptimizer, ServerOptState


@dataclass(frozen=True, slots=True)
class BaseVersion:
    """The version a round trained from: where the close step starts."""

    model: str
    version: int
    weights: np.ndarray  # flat float32
    server_state: ServerOptState


@dataclass(frozen=True, slots=True)
class NextVersion:
    """The version a round makes, before it is exported, scored and stored."""

    model: str
    version: int
    parent_version: int
    round_id: int
    created_at_ms: int
    weights: np.ndarray  # flat float32
    server_state: ServerOptState
    metrics: Mapping[str, float]  # what needs no evaluation: ``train_loss``
    num_examples: int
    num_updates: int

    def as_base(self) -> BaseVersion:
        """This version as the base of the next round."""
        return BaseVersion(self.model, self.version, self.weights, self.server_state)


def first_version(model: str, weights: np.ndarray, created_at_ms: int) -> NextVersion:
    """Version 0 of ``model``: its initial weights, no parent, no round, a fresh optimizer."""
    return NextVersion(model, 0, -1, 0, created_at_ms, weights, ServerOptState(), {}, 0, 0)


def next_version(
    base: BaseVersion,
    partials: Sequence[PartialSum],
    optimizer: ServerOptimizer,
    *,
    round_id: int,
    created_at_ms: int,
    noise_multiplier: float = 0.0,
    clip_norm: float = 0.0,
    rng: np.random.Generator | None = None,
    rule: str = "fedavg",
    trim_fraction: float = 0.0,
) -> NextVersion:
    """Combine a round's partials into the version after ``base``.

    Parameters
    ----------
    base:
        The version the round trained from (its weights and optimizer state).
    partials:
        The reporting hospitals' partial sums; hospitals without updates are skipped.
    optimizer:
        The server optimizer that turns the mean delta into the next weights.
    round_id, created_at_ms:
        The round that makes the version and when it closed (the lineage).
    noise_multiplier, clip_norm, rng:
        Central Gaussian noise, as :func:`flcore.master.combine` adds it.
    rule, trim_fraction:
        The aggregation rule across hospitals (:func:`flcore.master.combine`).

    Returns
    -------
    Version ``base.version + 1`` with parent ``base.version``: its weights,
    optimizer state, ``train_loss`` (the example-weighted mean of the devices'
    final training losses) and the counts of examples and updates behind it.

    Raises
    ------
    EmptyAggregate, SizeMismatch
        As :func:`flcore.master.combine`: nothing to combine, or a partial of
        the wrong size.
    NonFiniteVersion
        The next weights or the training loss are NaN or infinite (such a
        version is never stored or served).
    """
    result = combine(
        partials,
        base.weights,
        optimizer,
        base.server_state,
        noise_multiplier=noise_multiplier,
        clip_norm=clip_norm,
        rng=rng,
        rule=rule,
        trim_fraction=trim_fraction,
    )
    loss_sum = sum(p.loss_sum for p in partials if p.num_updates > 0)
    train_loss = loss_sum / result.num_examples
    if not np.isfinite(result.weights).all():
        bad = int(np.count_nonzero(~np.isfinite(result.weights)))
        raise NonFiniteVersion(f"{bad} of {result.weights.size} next weights are not finite")
    if not np.isfinite(train_loss):
        raise NonFiniteVersion(f"train_loss is {train_loss}")
    return NextVersion(
        model=base.model,
        version=base.version + 1,
        parent_version=base.version,
        round_id=round_id,
        created_at_ms=created_at_ms,
        weights=result.weights,
        server_state=result.state,
        metrics={"train_loss": float(train_loss)},
        num_examples=result.num_examples,
        num_updates=result.num_updates,
    )
