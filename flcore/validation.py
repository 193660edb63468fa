"""Checks one device update against the round it claims, returning a typed Rejection or None.

The function is pure: the set of devices already accepted in this round is
passed in, and the caller adds the device to it only once it folds the update.
The token is checked first, so nothing about the round leaks to an
unauthenticated sender; cheap scalar checks come before array scans.
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from flcore.blockwise import exact_squared_norm, first_non_finite, squared_norm
from flcore.rejection import Rejection, RejectReason
from flcore.tokens import verify_token

_NEAR = 1e-3  # relative margin under the norm bound where the norm is recomputed in float64


@dataclass(frozen=True, slots=True)
class RoundFacts:
    """What the aggregator knows about its hospital's round of one model."""

    model: str
    hospital_id: str
    round_id: int
    base_version: int
    is_open: bool
    expected_size: int
    norm_bound: float = 0.0  # 0 = no bound
    max_examples: int = 0  # examples one update may claim; 0 = no bound
    layer_sizes: tuple[tuple[str, int], ...] = ()  # optional per-layer sizes, for a better detail


@dataclass(frozen=True, slots=True)
class UpdateClaims:
    """One device upload: who sent it, what it claims to be, and its flat delta."""

    device_id: str
    hospital_id: str
    model: str
    round_id: int
    base_version: int
    num_examples: int
    token: bytes
    delta: np.ndarray


def validate_update(
    update: UpdateClaims,
    round_facts: RoundFacts,
    seen_devices: Container[str],
    *,
    now_ms: int,
    secret: bytes,
) -> Rejection | None:
    """Return None if ``update`` may be folded into the round, else the first Rejection found."""
    bad_token = verify_token(
        update.token,
        model=update.model,
        round_id=update.round_id,
        base_version=update.base_version,
        device_id=update.device_id,
        hospital_id=update.hospital_id,
        now_ms=now_ms,
        secret=secret,
    )
    if bad_token is not None:
        return bad_token
    rf = round_facts
    if update.model != rf.model:
        return Rejection(
            RejectReason.WRONG_MODEL, f"update for {update.model!r}, round is {rf.model!r}"
        )
    if update.hospital_id != rf.hospital_id:
        return Rejection(
            RejectReason.WRONG_HOSPITAL,
            f"update for {update.hospital_id!r}, aggregator is {rf.hospital_id!r}",
        )
    if update.round_id < rf.round_id or (update.round_id == rf.round_id and not rf.is_open):
        return Rejection(RejectReason.CLOSED_ROUND, f"round {update.round_id} is closed")
    if update.round_id > rf.round_id:
        return Rejection(
            RejectReason.UNKNOWN_ROUND,
            f"round {update.round_id} is not open yet (at {rf.round_id})",
        )
    if update.base_version != rf.base_version:
        return Rejection(
            RejectReason.WRONG_BASE_VERSION,
            f"trained from version {update.base_version}, round is based on {rf.base_version}",
        )
    if update.device_id in seen_devices:
        return Rejection(
            RejectReason.DUPLICATE,
            f"device {update.device_id!r} already reported in round {rf.round_id}",
        )
    if update.num_examples <= 0:
        return Rejection(RejectReason.NO_EXAMPLES, f"num_examples={update.num_examples}")
    if rf.max_examples and update.num_examples > rf.max_examples:
        return Rejection(
            RejectReason.TOO_MANY_EXAMPLES,
            f"num_examples={update.num_examples}, at most {rf.max_examples}",
        )
    return _check_array(update.delta, rf)


def _check_array(delta: np.ndarray, rf: RoundFacts) -> Rejection | None:
    if delta.ndim != 1 or delta.size != rf.expected_size:
        return Rejection(
            RejectReason.BAD_SHAPE, f"delta shape {delta.shape}, expected ({rf.expected_size},)"
        )
    if not np.issubdtype(delta.dtype, np.floating):
        return Rejection(RejectReason.BAD_SHAPE, f"delta dtype {delta.dtype} is not floating point")
    # One cached-block scan gives the norm and, for free, finiteness (see flcore.blockwise).
    squared = squared_norm(delta)
    if not math.isfinite(squared):
        first = first_non_finite(delta)
        if first is not None:
            return Rejection(RejectReason.NON_FINITE, f"{_locate(first, rf)} is {delta[first]}")
        squared = exact_squared_norm(delta)  # finite elements whose squares overflowed float32
    bound = rf.norm_bound
    near = (bound * (1 - _NEAR)) ** 2 < squared < (bound * (1 + _NEAR)) ** 2
    if bound > 0 and near and delta.dtype != np.float64:
        # Close to the bound the float32 block sums may err in the last digits: decide exactly.
        squared = exact_squared_norm(delta)
    norm = math.sqrt(squared)
    # A device clipping in float32 may land a hair above the bound; don't punish rounding.
    if bound > 0 and norm > bound * (1 + 1e-5):
        return Rejection(RejectReason.NORM_EXCEEDED, f"L2 norm {norm:.6g} > bound {bound:.6g}")
    if not math.isfinite(norm):
        return Rejection(RejectReason.NON_FINITE, "L2 norm overflows")
    return None


def _locate(index: int, rf: RoundFacts) -> str:
    offset = 0
    for name, size in rf.layer_sizes:
        if index < offset + size:
            return f"{name}[{index - offset}] (flat {index})"
        offset += size
    return f"element {index}"
