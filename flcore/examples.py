"""How many examples an update may claim: the plan's bound, and the device's own history.

An update's ``num_examples`` is its weight in FedAvg, so an inflated count is a
lever. Two checks, both pure:

* :func:`plan_max_examples`: a device trains on at most ``max_steps *
  batch_size`` distinct examples when the plan caps the steps; with the
  aggregator's own cap, the smaller bound wins. More is refused
  (``too_many_examples``).
* :func:`example_weight`: a device's count may grow between its reports
  (late labels arrive) but not jump: a claim above ``growth`` times its
  previous report is clamped to that and flagged. The history is kept by the
  caller, bounded (:class:`ExampleHistory`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

from flcore.errors import InvalidParameter


def plan_max_examples(max_steps: int, batch_size: int, cap: int) -> int:
    """Examples one update may claim under a plan (0: no bound): the plan's and ``cap``'s min."""
    bounds = [b for b in (max_steps * batch_size if max_steps > 0 else 0, cap) if b > 0]
    return min(bounds) if bounds else 0


def example_weight(claimed: int, previous: int | None, growth: float) -> tuple[int, bool]:
    """(weight to use, whether it was clamped): at most ``ceil(previous * growth)``."""
    if previous is None or previous <= 0:
        return claimed, False
    most = math.ceil(previous * growth)
    if claimed <= most:
        return claimed, False
    return most, True


class ExampleHistory:
    """The last reported count of at most ``limit`` keys (least recently seen go first).

    Key by (model, device): one device reports different counts for different models.
    """

    def __init__(self, limit: int, growth: float) -> None:
        """Remember ``limit`` devices; a report may grow by ``growth`` (>= 1) at most."""
        if limit < 1 or not growth >= 1:
            raise InvalidParameter(f"need limit >= 1 and growth >= 1, got {limit}, {growth}")
        self.limit, self.growth = limit, growth
        self._last: OrderedDict[Hashable, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def weigh(self, device: Hashable, claimed: int) -> tuple[int, bool]:
        """The weight of ``device``'s report of ``claimed`` examples, and whether it was clamped.

        Remembers the weight used (a clamped claim does not raise the next bound).
        """
        weight, clamped = example_weight(claimed, self._last.get(device), self.growth)
        self._last[device] = weight
        self._last.move_to_end(device)
        while len(self._last) > self.limit:
            self._last.popitem(last=False)
        return weight, clamped
