"""Typed selector configuration, validated at start-up; errors name the setting."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from schemas import CheckIn
from schemas._base import is_valid_id
from services.selector.errors import SelectorConfigError

FACTS = ("charging", "unmetered", "idle")


@dataclass(frozen=True, slots=True)
class EligibilityPolicy:
    """Which check-in facts make a device eligible to train now."""

    require: frozenset[str] = frozenset(FACTS)
    min_battery_pct: float = 0.0
    min_free_memory_mb: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.require) - set(FACTS))
        if unknown:
            raise SelectorConfigError(
                "eligibility", f"unknown facts {unknown}; choose from {list(FACTS)}"
            )
        if not (math.isfinite(self.min_battery_pct) and 0.0 <= self.min_battery_pct <= 100.0):
            raise SelectorConfigError(
                "min_battery_pct", f"must be in [0, 100], got {self.min_battery_pct}"
            )
        if self.min_free_memory_mb < 0:
            raise SelectorConfigError(
                "min_free_memory_mb", f"must be >= 0, got {self.min_free_memory_mb}"
            )

    @classmethod
    def parse(cls, spec: str, **limits: float) -> EligibilityPolicy:
        """Build from ``"charging,unmetered,idle"`` (``"none"`` or ``""``: no fact required)."""
        names = {s.strip() for s in spec.split(",") if s.strip()} - {"none"}
        return cls(frozenset(names), **limits)  # type: ignore[arg-type]

    def eligible(self, checkin: CheckIn) -> bool:
        """Whether ``checkin`` satisfies every requirement."""
        return (
            all(getattr(checkin, fact) for fact in self.require)
            and checkin.battery_pct >= self.min_battery_pct
            and checkin.free_memory_mb >= self.min_free_memory_mb
        )


@dataclass(frozen=True, slots=True)
class SelectorConfig:
    """Everything a selector replica needs; equal configs give equal answers."""

    token_secret: bytes = field(repr=False)
    eligibility: EligibilityPolicy = EligibilityPolicy()
    retry_jitter_ms: int = 60_000
    min_backoff_ms: int = 1_000
    no_round_retry_ms: int = 30_000
    selection_cutoff_ms: int = 0
    share_group: str = "selectors"
    workers: int = 16
    stats_interval_s: float = 30.0
    # A device may see a new plan (retained, from a faster replica) before this
    # replica has read it from Kafka; wait this long before saying "no open round".
    plan_wait_ms: int = 1_000

    def __post_init__(self) -> None:
        if not isinstance(self.token_secret, bytes) or not self.token_secret:
            raise SelectorConfigError(
                "token_secret", "must be a non-empty secret shared with the aggregators"
            )
        for name in ("retry_jitter_ms", "selection_cutoff_ms", "plan_wait_ms"):
            if getattr(self, name) < 0:
                raise SelectorConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("min_backoff_ms", "no_round_retry_ms", "workers"):
            if getattr(self, name) <= 0:
                raise SelectorConfigError(name, f"must be > 0, got {getattr(self, name)}")
        if not is_valid_id(self.share_group):
            raise SelectorConfigError(
                "share_group", f"must be a plain id like 'selectors', got {self.share_group!r}"
            )
        if not (math.isfinite(self.stats_interval_s) and self.stats_interval_s > 0):
            raise SelectorConfigError(
                "stats_interval_s", f"must be > 0, got {self.stats_interval_s}"
            )
