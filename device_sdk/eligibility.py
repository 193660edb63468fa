"""When may this device train? Conditions come from a provider; a policy decides.

The provider is a port (the app implements it from OS battery/network APIs);
``SimulatedConditions`` is a seeded stand-in for tests and the demo. The policy
is pure and returns a decision with every reason it fails, never just False.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class DeviceConditions:
    """A snapshot of the device state relevant to training."""

    charging: bool
    unmetered_network: bool
    idle: bool
    battery_level: float  # 0.0 .. 1.0
    free_memory_mb: int


class ConditionsProvider(Protocol):
    """Port: report the device's conditions at ``now``."""

    def conditions(self, now: datetime) -> DeviceConditions:
        """Return the device conditions at ``now``."""
        ...


@dataclass(frozen=True)
class FixedConditions:
    """A provider that always reports the same conditions."""

    fixed: DeviceConditions

    def conditions(self, now: datetime) -> DeviceConditions:
        """Return the fixed conditions whatever the time."""
        return self.fixed


@dataclass(frozen=True)
class SimulatedConditions:
    """A phone that charges on the hospital Wi-Fi some nights: seeded, a function of time.

    During the night window (local hours of ``now``) the phone is on the charger
    and the hospital network on ``nights_per_week``/7 of the nights; outside it,
    it is in use on a metered network. Same seed and hour, same answer.
    """

    seed: int
    nights_per_week: float = 3.0
    night_start_hour: int = 22
    night_end_hour: int = 6
    total_memory_mb: int = 4096

    def _rng(self, now: datetime, salt: str) -> np.random.Generator:
        night = (now.toordinal() - (1 if now.hour < self.night_end_hour else 0), salt)
        digest = hashlib.sha256(f"{self.seed}:{night}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "big"))

    def _at_night(self, now: datetime) -> bool:
        return now.hour >= self.night_start_hour or now.hour < self.night_end_hour

    def conditions(self, now: datetime) -> DeviceConditions:
        """Conditions at ``now``, stable within a night for the charging decision."""
        docked = self._at_night(now) and self._rng(now, "dock").random() < self.nights_per_week / 7
        hourly = self._rng(now, f"hour{now.hour}")
        return DeviceConditions(
            charging=docked,
            unmetered_network=docked,
            idle=docked or hourly.random() < 0.1,
            battery_level=float(hourly.uniform(0.8, 1.0) if docked else hourly.uniform(0.1, 0.9)),
            free_memory_mb=int(self.total_memory_mb * hourly.uniform(0.1, 0.6)),
        )


@dataclass(frozen=True)
class EligibilityDecision:
    """Whether the device may train now, and every reason it may not."""

    eligible: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class EligibilityPolicy:
    """Conditions a device must meet to check in for training."""

    require_charging: bool = True
    require_unmetered: bool = True
    require_idle: bool = True
    min_battery: float = 0.5
    min_free_memory_mb: int = 256

    def check(self, c: DeviceConditions) -> EligibilityDecision:
        """Decide eligibility for the given conditions."""
        reasons: list[str] = []
        if self.require_charging and not c.charging:
            reasons.append("not_charging")
        if self.require_unmetered and not c.unmetered_network:
            reasons.append("metered_network")
        if self.require_idle and not c.idle:
            reasons.append("not_idle")
        if c.battery_level < self.min_battery:
            reasons.append("battery_low")
        if c.free_memory_mb < self.min_free_memory_mb:
            reasons.append("memory_low")
        return EligibilityDecision(eligible=not reasons, reasons=tuple(reasons))
