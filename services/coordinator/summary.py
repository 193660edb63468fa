"""What happened in one round, as progress displays and reports read it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RoundSummary:
    """What happened in one round, for progress displays and reports."""

    model: str
    round_id: int
    base_version: int
    outcome: str = "open"  # open, done, abandoned
    reason: str = ""
    new_version: int | None = None
    opened_at_ms: int = 0
    closed_at_ms: int = 0
    goals: dict[str, int] = field(default_factory=dict)
    admitted: dict[str, int] = field(default_factory=dict)
    reported: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # hospital -> why its partial was
    examples: int = 0
    train_seconds: float = 0.0
    train_loss: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def wall_seconds(self) -> float:
        """Seconds from opening to closing."""
        return max(0, self.closed_at_ms - self.opened_at_ms) / 1000
