"""Master aggregation: the hospitals' partial sums become the next global weights.

Each partial carries ``sum_i n_i * delta_i`` over its hospital's accepted
updates. The master sums them, divides by the total example count (FedAvg
weighted by examples), optionally adds central Gaussian noise, and hands the
mean delta to the server optimizer. Pure: arrays in, arrays out; the noise
draws from the generator passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flcore.errors import EmptyAggregate, SizeMismatch
from flcore.privacy import add_gaussian_noise, central_noise_stddev
from flcore.robust import FEDAVG, robust_mean
from flcore.server_opt import ServerOptimizer, ServerOptState


@dataclass(frozen=True, slots=True)
class PartialSum:
    """One hospital's contribution: the weighted sum of its deltas and what it counts."""

    hospital: str
    weighted_sum: np.ndarray  # sum of num_examples * delta, flat
    num_examples: int
    num_updates: int
    loss_sum: float = 0.0  # sum of num_examples * final local training loss


@dataclass(frozen=True, slots=True)
class MasterResult:
    """The next weights, the optimizer's new state and what went into them."""

    weights: np.ndarray
    state: ServerOptState
    mean_delta: np.ndarray
    num_examples: int
    num_updates: int


def combine(
    partials: Sequence[PartialSum],
    weights: np.ndarray,
    optimizer: ServerOptimizer,
    state: ServerOptState,
    *,
    noise_multiplier: float = 0.0,
    clip_norm: float = 0.0,
    rng: np.random.Generator | None = None,
    rule: str = FEDAVG,
    trim_fraction: float = 0.0,
) -> MasterResult:
    """Combine the partials into the next global weights.

    Parameters
    ----------
    partials:
        The reporting hospitals' partial sums (hospitals with no update are skipped).
    weights:
        The current global weights (flat float32).
    optimizer, state:
        The server optimizer and its state after the previous round.
    noise_multiplier, clip_norm, rng:
        Central Gaussian noise of stddev ``noise_multiplier * clip_norm / updates``
        on the mean delta; off when ``noise_multiplier`` is 0.
    rule, trim_fraction:
        ``fedavg``: the example-weighted mean of every update. ``median`` or
        ``trimmed_mean``: each hospital's partial carries ``num_examples`` times
        its own robust estimate; the rule applies again, unweighted, across the
        hospitals' estimates (``flcore.robust``). With 2 hospitals the median is
        their plain mean; with 3 it is the middle one, per coordinate.

    Returns
    -------
    The next weights and optimizer state, the mean delta and the counts.

    Raises
    ------
    EmptyAggregate
        No partial holds an example.
    SizeMismatch
        A partial's sum does not match the weights' size (names the hospital).
    """
    reporting = [p for p in partials if p.num_updates > 0 and p.num_examples > 0]
    examples = sum(p.num_examples for p in reporting)
    if examples <= 0:
        raise EmptyAggregate("no examples in the reporting partials")
    total = np.zeros(weights.size, np.float64)
    for p in reporting:
        if p.weighted_sum.size != weights.size:
            raise SizeMismatch(
                f"partial of {p.hospital} has {p.weighted_sum.size} values, "
                f"the model {weights.size}"
            )
        total += p.weighted_sum
    if rule == FEDAVG:
        mean_delta = total / examples
    else:
        estimates = np.stack([p.weighted_sum / p.num_examples for p in reporting])
        mean_delta = robust_mean(rule, estimates, trim_fraction).astype(np.float64)
    updates = sum(p.num_updates for p in reporting)
    if noise_multiplier > 0:
        if rng is None:
            raise ValueError("central noise needs a random generator")
        sigma = central_noise_stddev(noise_multiplier, clip_norm, updates)
        mean_delta = add_gaussian_noise(mean_delta, sigma, rng)
    new_weights, new_state = optimizer.step(weights, mean_delta.astype(np.float32), state)
    return MasterResult(new_weights, new_state, mean_delta, examples, updates)
