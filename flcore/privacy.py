"""Differential-privacy building blocks: L2 clipping and Gaussian noise over flat vectors.

Devices clip their update to an L2 bound C before upload (bounding one
device's influence); the coordinator may add Gaussian noise of standard
deviation ``noise_multiplier * C / n`` to the mean of n clipped updates
(central DP, as in DP-FedAvg, McMahan et al. 2018). Accounting (epsilon) is
out of scope here.
"""

from __future__ import annotations

import math

import numpy as np

from flcore.errors import InvalidParameter


def l2_norm(vector: np.ndarray) -> float:
    """L2 norm computed in float64 (float32 squares overflow for large entries)."""
    return float(np.linalg.norm(vector.astype(np.float64, copy=False)))


def clip_l2(update: np.ndarray, bound: float) -> tuple[np.ndarray, float]:
    """Scale ``update`` down to L2 norm <= ``bound`` (0 = off); return (clipped, original norm)."""
    if not math.isfinite(bound) or bound < 0:
        raise InvalidParameter(f"clip bound must be finite and >= 0, got {bound}")
    norm = l2_norm(update)
    if bound == 0 or norm <= bound:
        return update.copy(), norm
    # Scale in float64 and shave a hair so the float32 result cannot exceed the bound.
    scale = bound / norm * (1 - 1e-7)
    return (update.astype(np.float64) * scale).astype(update.dtype), norm


def add_gaussian_noise(vector: np.ndarray, stddev: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``vector`` plus i.i.d. N(0, stddev^2) noise drawn from ``rng``; same dtype."""
    if not math.isfinite(stddev) or stddev < 0:
        raise InvalidParameter(f"noise stddev must be finite and >= 0, got {stddev}")
    if stddev == 0:
        return vector.copy()
    noise = rng.normal(0.0, stddev, size=vector.shape)
    return (vector.astype(np.float64) + noise).astype(vector.dtype)


def central_noise_stddev(noise_multiplier: float, clip_bound: float, num_updates: int) -> float:
    """Standard deviation of the noise to add to the mean of ``num_updates`` clipped updates."""
    if noise_multiplier < 0 or clip_bound < 0 or num_updates <= 0:
        raise InvalidParameter(
            "need noise_multiplier >= 0, clip_bound >= 0 and num_updates > 0, got "
            f"{noise_multiplier}, {clip_bound}, {num_updates}"
        )
    return noise_multiplier * clip_bound / num_updates
