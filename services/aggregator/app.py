"""Composition root of the aggregator: wire a bus and a clock to the handler."""

from __future__ import annotations

import time
from collections.abc import Callable

from flbus.port import LogBus
from services.aggregator.aggregator import Aggregator
from services.aggregator.config import AggregatorConfig


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch (the clock deadlines are written in)."""
    return time.time_ns() // 1_000_000


def build(config: AggregatorConfig, log_bus: LogBus, clock: Callable[[], int]) -> Aggregator:
    """Build one hospital's aggregator on a started ``log_bus`` (Kafka, or MemoryLog in tests)."""
    return Aggregator(config, log_bus, clock)
