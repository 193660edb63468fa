"""The wall clock every process reads: integer milliseconds since the Unix epoch.

Deadlines, token expiries and log times on the wire are written in this unit.
The pure core never reads a clock; shells take a :data:`Clock` argument so a
test can pass a fake one, and processes pass :func:`wall_ms`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""A source of "now" in milliseconds since the Unix epoch."""


def wall_ms() -> int:
    """Milliseconds since the Unix epoch, from the system clock."""
    return time.time_ns() // 1_000_000
