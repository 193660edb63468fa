"""Typed selector configuration, validated at start-up, and how a user spells it.

Errors are :class:`flproc.errors.SettingError` naming the config field; the
command renders them with the flag and variable of :data:`SETTINGS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flproc.errors import SettingError
from flproc.parsers import Range, names
from flproc.settings import Setting
from schemas import CheckIn
from schemas._base import is_valid_id
from services.common.settings import HOSPITALS, TOKEN_SECRET

FACTS = ("charging", "unmetered", "idle")
_WHOLE_AT_LEAST_0 = Range(0, integer=True)
_WHOLE_ABOVE_0 = Range(0, low_open=True, integer=True)
RANGES: dict[str, Range] = {
    "min_battery_pct": Range(0, 100),
    "min_free_memory_mb": _WHOLE_AT_LEAST_0,
    "retry_jitter_ms": _WHOLE_AT_LEAST_0,
    "selection_cutoff_ms": _WHOLE_AT_LEAST_0,
    "plan_wait_ms": _WHOLE_AT_LEAST_0,
    "min_backoff_ms": _WHOLE_ABOVE_0,
    "no_round_retry_ms": _WHOLE_ABOVE_0,
    "workers": _WHOLE_ABOVE_0,
    "max_models_per_checkin": _WHOLE_ABOVE_0,
    "max_field_chars": _WHOLE_ABOVE_0,
    "max_forward_bytes": _WHOLE_ABOVE_0,
    "checkin_interval_ms": _WHOLE_AT_LEAST_0,
    "tracked_devices": _WHOLE_ABOVE_0,
    "park_max": _WHOLE_AT_LEAST_0,
    "stats_interval_s": Range(0, low_open=True),
    "stall_s": Range(0, low_open=True),
}
"""The numbers each numeric field accepts (the config's check and its setting's parser)."""


@dataclass(frozen=True, slots=True)
class EligibilityPolicy:
    """Which check-in facts make a device eligible to train now."""

    require: frozenset[str] = frozenset(FACTS)
    min_battery_pct: float = 0.0
    min_free_memory_mb: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.require) - set(FACTS))
        if unknown:
            raise SettingError("eligibility", f"unknown facts {unknown}; choose from {list(FACTS)}")
        for name in ("min_battery_pct", "min_free_memory_mb"):
            RANGES[name].check(name, getattr(self, name))

    @classmethod
    def parse(cls, spec: str, **limits: float) -> EligibilityPolicy:
        """Build from ``"charging,unmetered,idle"`` (``"none"`` or ``""``: no fact required)."""
        return cls(_facts(spec), **limits)  # type: ignore[arg-type]

    def eligible(self, checkin: CheckIn) -> bool:
        """Whether ``checkin`` satisfies every requirement."""
        return (
            all(getattr(checkin, fact) for fact in self.require)
            and checkin.battery_pct >= self.min_battery_pct
            and checkin.free_memory_mb >= self.min_free_memory_mb
        )


def _facts(spec: str) -> frozenset[str]:
    return frozenset(names(spec)) - {"none"}


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
    # Check-ins parked for a plan, answered as soon as it arrives (the rest: a short retry).
    plan_wait_ms: int = 1_000
    park_max: int = 1_000
    # What a device may make this replica forward, hold or do.
    hospitals: tuple[str, ...] = ("h0", "h1", "h2")
    max_models_per_checkin: int = 16
    max_field_chars: int = 256
    max_forward_bytes: int = 1_000_000  # Kafka's default message.max.bytes is 1 MiB
    checkin_interval_ms: int = 1_000
    tracked_devices: int = 100_000
    # Health: device messages waiting and none handled for this long means stalled.
    stall_s: float = 20.0

    def __post_init__(self) -> None:
        if not isinstance(self.token_secret, bytes) or not self.token_secret:
            raise SettingError("token_secret", "must be a non-empty secret shared with aggregators")
        for name in ("retry_jitter_ms", "selection_cutoff_ms", "plan_wait_ms", "min_backoff_ms",
                     "no_round_retry_ms", "workers", "stats_interval_s", "park_max",
                     "max_models_per_checkin", "max_field_chars", "max_forward_bytes",
                     "checkin_interval_ms", "tracked_devices", "stall_s"):  # fmt: skip
            RANGES[name].check(name, getattr(self, name))
        bad = [h for h in self.hospitals if not is_valid_id(h)]
        if not self.hospitals or bad or len(set(self.hospitals)) != len(self.hospitals):
            raise SettingError("hospitals", f"need distinct hospital ids, got {self.hospitals}")
        if not is_valid_id(self.share_group):
            raise SettingError(
                "share_group", f"must be a plain id like 'selectors', got {self.share_group!r}"
            )

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> SelectorConfig:
        """The config from :func:`flproc.settings.resolve` over :data:`SETTINGS`."""
        values = dict(values)
        policy = EligibilityPolicy(
            values.pop("eligibility"), min_battery_pct=values.pop("min_battery_pct")
        )
        return cls(eligibility=policy, **values)


SETTINGS: tuple[Setting, ...] = (
    TOKEN_SECRET,
    Setting("share_group", "--share-group", "FL_SELECTOR_SHARE_GROUP",
            "MQTT v5 shared subscription group of the replicas", default="selectors"),
    Setting("eligibility", "--eligibility", "FL_ELIGIBILITY",
            f"check-in facts a device needs, comma separated ({', '.join(FACTS)}), or 'none'",
            _facts, "charging,unmetered,idle"),
    Setting("min_battery_pct", "--min-battery-pct", "FL_MIN_BATTERY_PCT",
            "lowest battery level admitted (%)", RANGES["min_battery_pct"].parse, "0"),
    Setting("retry_jitter_ms", "--retry-jitter-ms", "FL_RETRY_JITTER_MS",
            "spread of the retry times given to declined devices (ms)",
            RANGES["retry_jitter_ms"].parse, "60000"),
    Setting("min_backoff_ms", "--min-backoff-ms", "FL_MIN_BACKOFF_MS",
            "earliest a declined device may come back (ms)",
            RANGES["min_backoff_ms"].parse, "1000"),
    Setting("no_round_retry_ms", "--no-round-retry-ms", "FL_NO_ROUND_RETRY_MS",
            "when a device with no open round should come back (ms)",
            RANGES["no_round_retry_ms"].parse, "30000"),
    Setting("selection_cutoff_ms", "--selection-cutoff-ms", "FL_SELECTION_CUTOFF_MS",
            "stop admitting this long before a round's deadline (ms)",
            RANGES["selection_cutoff_ms"].parse, "0"),
    Setting("workers", "--workers", "FL_SELECTOR_WORKERS",
            "device messages handled concurrently, per plane: check-ins, and uploads with "
            "evaluations (one device stays in order)",
            RANGES["workers"].parse, "16"),
    Setting("stats_interval_s", "--stats-interval", "FL_STATS_INTERVAL",
            "seconds between selector.stats log lines", RANGES["stats_interval_s"].parse, "30"),
    Setting("plan_wait_ms", "--plan-wait-ms", "FL_PLAN_WAIT_MS",
            "how long a check-in waits for a plan this replica has not read yet (ms)",
            RANGES["plan_wait_ms"].parse, "1000"),
    Setting("park_max", "--park-max", "FL_SELECTOR_PARK_MAX",
            "check-ins waiting for a plan at once (more get a short retry)",
            RANGES["park_max"].parse, "1000"),
    HOSPITALS,
    Setting("max_models_per_checkin", "--max-models-per-checkin", "FL_MAX_MODELS_PER_CHECKIN",
            "models one check-in may list (more: refused)",
            RANGES["max_models_per_checkin"].parse, "16"),
    Setting("max_field_chars", "--max-field-chars", "FL_MAX_FIELD_CHARS",
            "longest text field of a device message forwarded to Kafka",
            RANGES["max_field_chars"].parse, "256"),
    Setting("max_forward_bytes", "--max-forward-bytes", "FL_MAX_FORWARD_BYTES",
            "largest device message forwarded to Kafka (bytes)",
            RANGES["max_forward_bytes"].parse, "1000000"),
    Setting("checkin_interval_ms", "--checkin-interval-ms", "FL_CHECKIN_INTERVAL_MS",
            "shortest time between two check-ins of one device (0: no limit)",
            RANGES["checkin_interval_ms"].parse, "1000"),
    Setting("tracked_devices", "--tracked-devices", "FL_SELECTOR_TRACKED_DEVICES",
            "devices (and upload streams) remembered for rate limits and audit dedup",
            RANGES["tracked_devices"].parse, "100000"),
    Setting("stall_s", "--stall-after", "FL_STALL_AFTER_S",
            "unhealthy when device messages wait and none was handled for this long (s)",
            RANGES["stall_s"].parse, "20"),
)  # fmt: skip
"""Every setting of :class:`SelectorConfig`, in ``--help`` order."""
