"""Checks one hospital's partial aggregate before the master combines it: a typed Rejection or None.

A partial is a hospital aggregator's word about its round: how many updates
it folded, how many examples they trained on, and the example-weighted sum
of their deltas. The master trusts none of it blindly. The sum must have the
model's size and be finite; the counts must be plausible against the plan
(no more updates than the hospital could have admitted devices, no more
examples than those updates can claim). A refused partial is data: the
coordinator audits it and goes on with the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flcore.master import PartialSum
from flcore.rejection import Rejection, RejectReason


@dataclass(frozen=True, slots=True)
class PartialBounds:
    """What a hospital's partial of one round may claim at most."""

    size: int  # values in the model's flat weights
    max_updates: int  # devices the hospital can have had admitted
    max_examples_per_update: int  # examples one update may claim


def partial_bounds(
    size: int, goal: int, admitted: int, over_selection: float, max_examples_per_update: int
) -> PartialBounds:
    """Bounds of a hospital's partial: updates up to its admitted devices (at least its goal
    over-selected, since an admission may reach the coordinator after the partial)."""
    return PartialBounds(
        size, max(admitted, math.ceil(goal * over_selection)), max_examples_per_update
    )


def check_partial(partial: PartialSum, bounds: PartialBounds) -> Rejection | None:
    """Return None if ``partial`` may be combined, else the first Rejection found."""
    p = partial
    if p.num_updates < 0 or p.num_examples < 0:
        return Rejection(
            RejectReason.IMPLAUSIBLE_COUNT,
            f"negative counts: {p.num_updates} updates, {p.num_examples} examples",
        )
    if p.num_updates > bounds.max_updates:
        return Rejection(
            RejectReason.IMPLAUSIBLE_COUNT,
            f"{p.num_updates} updates, at most {bounds.max_updates} devices admitted",
        )
    most = p.num_updates * bounds.max_examples_per_update
    if p.num_examples > most:
        return Rejection(
            RejectReason.IMPLAUSIBLE_COUNT,
            f"{p.num_examples} examples from {p.num_updates} updates (at most {most})",
        )
    if (p.num_updates == 0) != (p.num_examples == 0):
        return Rejection(
            RejectReason.IMPLAUSIBLE_COUNT,
            f"{p.num_updates} updates but {p.num_examples} examples",
        )
    s = p.weighted_sum
    if s.ndim != 1 or s.size != bounds.size:
        return Rejection(RejectReason.BAD_SHAPE, f"sum shape {s.shape}, expected ({bounds.size},)")
    if not np.issubdtype(s.dtype, np.floating):
        return Rejection(RejectReason.BAD_SHAPE, f"sum dtype {s.dtype} is not floating point")
    finite = np.isfinite(s)
    if not finite.all():
        first = int(np.argmin(finite))
        return Rejection(RejectReason.NON_FINITE, f"element {first} is {s[first]}")
    if not math.isfinite(p.loss_sum):
        return Rejection(RejectReason.NON_FINITE, f"loss_sum is {p.loss_sum}")
    return None
