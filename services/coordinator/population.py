"""The devices each hospital is expected to have, learnt from check-ins within bounds.

Check-ins are anonymous: only configured hospitals count, at most
``max_devices_per_hospital`` devices each, and a hospital's goal grows at most
``goal_growth`` times from one round to the next (``flcore.admission``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flcore.admission import learnt_population
from flcore.timing import observed_checkin_rate
from services.coordinator.config import RoundSettings


@dataclass
class Population:
    """Devices seen checking in since the last round opened, that round's goals, answer rate."""

    hospitals: tuple[str, ...]
    known: Mapping[str, int]  # configured devices per hospital (trusted)
    settings: RoundSettings
    seen: dict[str, set[str]] = field(default_factory=dict)
    last_goals: dict[str, int] = field(default_factory=dict)
    # Check-ins answered per second, as measured by the last selection window that ran out.
    checkins_per_s: float | None = None

    def note(self, hospital: str, device: str) -> None:
        """Count a device seen checking in (a configured hospital's, up to the ceiling)."""
        if hospital not in self.hospitals:
            return
        devices = self.seen.setdefault(hospital, set())
        if len(devices) < self.settings.max_devices_per_hospital:
            devices.add(device)

    def expected(self) -> dict[str, int]:
        """Devices each hospital is expected to have in the next round."""
        s = self.settings
        return {
            h: learnt_population(
                self.known.get(h, 0),
                len(self.seen.get(h, ())),
                self.last_goals.get(h),
                fraction=s.fraction,
                growth=s.goal_growth,
                ceiling=s.max_devices_per_hospital,
            )
            for h in self.hospitals
        }

    def planned(self, goals: Mapping[str, int]) -> None:
        """A round opened with ``goals``: count check-ins afresh, cap growth from these."""
        self.seen.clear()
        self.last_goals = dict(goals)

    def selection_ended(
        self, admitted: int, probability: float, window_ms: int, *, targets_met: bool
    ) -> None:
        """A round stopped admitting: a window that ran out measures the answer rate.

        ``admitted / probability`` estimates the check-ins answered in the window.
        """
        answered = admitted / probability if probability > 0 else float(admitted)
        rate = observed_checkin_rate(answered, window_ms, targets_met=targets_met)
        if rate is not None:
            self.checkins_per_s = rate
