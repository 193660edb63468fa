"""Exceptions of the simulation and experiment set-up.

Hierarchy::

    SimulationError                (also ValueError)
    ├── PartitionSpecError         a partition spec field is invalid; ``.field`` names it
    ├── ExperimentError            a partition spec or initial-weights file does not fit the run
    ├── ShardCapacityError         more devices than the worker processes can hold
    └── ShardDiedError             a worker process of a sharded population exited on its own
"""

from __future__ import annotations


class SimulationError(ValueError):
    """Base class of every error raised by flsim."""


class PartitionSpecError(SimulationError):
    """A partition spec is invalid; ``field`` is a path like ``devices[2].train[5]``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ExperimentError(SimulationError):
    """A partition spec or an initial-weights file does not fit the run; names the problem."""


class ShardCapacityError(SimulationError):
    """More devices were asked for than the worker processes can hold (descriptor limit)."""


class ShardDiedError(SimulationError):
    """A worker process of a sharded population exited while the population was running."""
