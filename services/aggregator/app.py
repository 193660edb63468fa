"""Composition root of the aggregator: wire a bus and a clock to the handler."""

from __future__ import annotations

from flbus.port import LogBus
from flproc.clock import Clock
from services.aggregator.aggregator import Aggregator
from services.aggregator.config import AggregatorConfig


def build(config: AggregatorConfig, log_bus: LogBus, clock: Clock) -> Aggregator:
    """Build one hospital's aggregator on a started ``log_bus`` (Kafka, or MemoryLog in tests)."""
    return Aggregator(config, log_bus, clock)
