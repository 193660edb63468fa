"""Counters an aggregator exposes and logs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class AggregatorStats:
    """Counters since start: updates accepted, rejected by reason, devices dropped, partials,
    and records dead-lettered by reason."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    partials: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    clamped: int = 0  # accepted updates whose example count was clamped to the device's history
    plans_refused: int = 0  # robust rounds not opened: their updates would exceed the memory bound

    def copy(self) -> AggregatorStats:
        """An independent snapshot."""
        return AggregatorStats(
            self.accepted,
            Counter(self.rejected),
            self.dropped,
            self.partials,
            Counter(self.dead_lettered),
            self.clamped,
            self.plans_refused,
        )

    def as_dict(self) -> dict[str, object]:
        """Plain data for logs and status output."""
        return {
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "dropped": self.dropped,
            "partials": self.partials,
            "dead_lettered": dict(self.dead_lettered),
            "clamped": self.clamped,
            "plans_refused": self.plans_refused,
        }
