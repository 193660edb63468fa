"""Check-ins waiting briefly for a plan this replica has not read yet.

A device may see a plan retained by a faster replica (or check in a few
milliseconds after ``round.opened``) before this replica read the plan from
Kafka. Answering "no open round" would send it away for half a minute because
of the selector's lag, so such a check-in is parked instead: answered as soon as
a selecting plan of one of its models arrives, or with the plans of the moment
once its wait is over. Parking holds records, never a worker, and at most
``capacity`` of them; times are the caller's (seconds, monotonic).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass

from flbus.port import Record


@dataclass(frozen=True, slots=True)
class Parked:
    """One waiting check-in: its record, the models it asks about, when its wait ends."""

    record: Record
    models: frozenset[str]
    until: float


class Parking:
    """Bounded FIFO of parked check-ins, released by model or by age."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[int, Parked] = OrderedDict()
        self._ids = itertools.count()

    def park(self, record: Record, models: frozenset[str], until: float) -> bool:
        """Hold ``record`` until ``until``; False (nothing held) when parking is full."""
        if len(self._items) >= self.capacity:
            return False
        self._items[next(self._ids)] = Parked(record, models, until)
        return True

    def models(self) -> frozenset[str]:
        """Every model some parked check-in waits for."""
        return frozenset().union(*(p.models for p in self._items.values()))

    def release(self, model: str) -> list[Record]:
        """Take out every check-in that asks about ``model``, oldest first."""
        ids = [i for i, p in self._items.items() if model in p.models]
        return [self._items.pop(i).record for i in ids]

    def expired(self, now: float) -> list[Record]:
        """Take out every check-in whose wait is over (waits are equal, so order is age)."""
        out = []
        while self._items:
            first = next(iter(self._items))
            if self._items[first].until > now:
                break
            out.append(self._items.pop(first).record)
        return out

    def __len__(self) -> int:
        return len(self._items)
