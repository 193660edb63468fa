"""Typed, validated settings of one hospital aggregator, and how a user spells them."""

from __future__ import annotations

from dataclasses import dataclass, field

from flcore.examples import ExampleHistory
from flproc.errors import SettingError
from flproc.parsers import Range, host_ports
from flproc.settings import KAFKA_BOOTSTRAP, Setting
from schemas._base import ID_RULE, is_valid_id
from services.aggregator.intake import StreamLimits
from services.common.settings import TOKEN_SECRET

_AT_LEAST_1, _AT_LEAST_0 = Range(1, integer=True), Range(0, integer=True)
MIB = 1024 * 1024
RANGES: dict[str, Range] = {
    "tick_ms": _AT_LEAST_1,
    "stream_timeout_ms": _AT_LEAST_1,
    "catch_up_idle_ms": _AT_LEAST_0,
    "park_ms": _AT_LEAST_0,
    "park_limit": _AT_LEAST_0,
    "stream_max_age_ms": _AT_LEAST_1,
    "max_upload_bytes": _AT_LEAST_1,
    "max_uploads": _AT_LEAST_1,
    "max_uploads_per_device": _AT_LEAST_1,
    "max_upload_bytes_held": _AT_LEAST_1,
    "max_examples": _AT_LEAST_1,
    "max_robust_bytes": _AT_LEAST_1,
    "example_history": _AT_LEAST_1,
    "example_growth": Range(1),
}
"""The numbers each numeric field accepts (the config's check and its setting's parser)."""


@dataclass(frozen=True, slots=True)
class AggregatorConfig:
    """Everything one aggregator process needs; validated on construction.

    Raises :class:`flproc.errors.SettingError` naming the field; the command
    renders it with the flag and variable of :data:`SETTINGS`.
    """

    hospital: str
    token_secret: bytes = field(repr=False)
    kafka_bootstrap: str = "127.0.0.1:9092"
    group: str = ""  # empty: aggregator.<hospital>
    tick_ms: int = 50  # how often deadlines are checked
    stream_timeout_ms: int = 60_000  # an upload idle this long is dropped
    stream_max_age_ms: int = 300_000  # an upload still incomplete this long is dropped
    max_upload_bytes: int = 64 * MIB  # bytes one upload may claim
    max_uploads: int = 256  # uploads in flight in this process
    max_uploads_per_device: int = 2  # uploads in flight per device
    max_upload_bytes_held: int = 256 * MIB  # bytes all uploads in flight may claim together
    max_examples: int = 100_000  # examples one update may claim
    catch_up_idle_ms: int = 2_000  # start-up reads stop after this long without a record
    park_ms: int = 10_000  # how long an update may wait for its round's plan
    park_limit: int = 10_000  # updates waiting for a plan at most (then rejected at once)
    max_robust_bytes: int = 512 * MIB  # a median/trimmed-mean round's updates may hold
    example_history: int = 100_000  # devices whose last example count is remembered
    example_growth: float = 2.0  # a device's count may grow this much between reports

    def __post_init__(self) -> None:
        if not isinstance(self.hospital, str) or not is_valid_id(self.hospital):
            raise SettingError("hospital", f"must be {ID_RULE}, got {self.hospital!r}")
        if not isinstance(self.token_secret, bytes) or not self.token_secret:
            raise SettingError("token_secret", "must be a non-empty secret shared with selectors")
        try:
            host_ports(self.kafka_bootstrap)
        except ValueError as exc:
            raise SettingError("kafka_bootstrap", str(exc)) from None
        if self.group and not all(c.isalnum() or c in "._-" for c in self.group):
            raise SettingError("group", f"must be [A-Za-z0-9._-], got {self.group!r}")
        for name, within in RANGES.items():
            within.check(name, getattr(self, name))

    @property
    def consumer_group(self) -> str:
        """The consumer group of the updates topic."""
        return self.group or f"aggregator.{self.hospital}"

    def example_memory(self) -> ExampleHistory:
        """A fresh bounded memory of the devices' example counts."""
        return ExampleHistory(self.example_history, self.example_growth)

    @property
    def stream_limits(self) -> StreamLimits:
        """What uploads in flight may hold."""
        return StreamLimits(
            idle_ms=self.stream_timeout_ms,
            max_age_ms=self.stream_max_age_ms,
            max_upload_bytes=self.max_upload_bytes,
            max_open=self.max_uploads,
            max_open_per_device=self.max_uploads_per_device,
            max_held_bytes=self.max_upload_bytes_held,
        )


SETTINGS: tuple[Setting, ...] = (
    Setting("hospital", "--hospital", "FL_HOSPITAL", "hospital id this aggregator serves",
            required=True),
    KAFKA_BOOTSTRAP,
    TOKEN_SECRET,
    Setting("group", "--group", "FL_AGGREGATOR_GROUP",
            "consumer group of the updates topic (empty: aggregator.<hospital>)", default=""),
    Setting("tick_ms", "--tick-ms", "FL_AGGREGATOR_TICK_MS",
            "how often round deadlines are checked (ms)", RANGES["tick_ms"].parse, "50"),
    Setting("stream_timeout_ms", "--stream-timeout-ms", "FL_AGGREGATOR_STREAM_TIMEOUT_MS",
            "an upload with no new chunk for this long is dropped (ms)",
            RANGES["stream_timeout_ms"].parse, "60000"),
    Setting("stream_max_age_ms", "--stream-max-age-ms", "FL_AGGREGATOR_STREAM_MAX_AGE_MS",
            "an upload still incomplete this long after its first chunk is dropped (ms)",
            RANGES["stream_max_age_ms"].parse, "300000"),
    Setting("max_upload_bytes", "--max-upload-bytes", "FL_AGGREGATOR_MAX_UPLOAD_BYTES",
            "bytes one upload may claim (larger ones are refused on their first chunk)",
            RANGES["max_upload_bytes"].parse, str(64 * MIB)),
    Setting("max_uploads", "--max-uploads", "FL_AGGREGATOR_MAX_UPLOADS",
            "uploads in flight in this process at most", RANGES["max_uploads"].parse, "256"),
    Setting("max_uploads_per_device", "--max-uploads-per-device",
            "FL_AGGREGATOR_MAX_UPLOADS_PER_DEVICE", "uploads in flight per device at most",
            RANGES["max_uploads_per_device"].parse, "2"),
    Setting("max_upload_bytes_held", "--max-upload-bytes-held",
            "FL_AGGREGATOR_MAX_UPLOAD_BYTES_HELD",
            "bytes all uploads in flight may claim together",
            RANGES["max_upload_bytes_held"].parse, str(256 * MIB)),
    Setting("max_examples", "--max-examples", "FL_AGGREGATOR_MAX_EXAMPLES",
            "examples one update may claim (more is refused as too_many_examples)",
            RANGES["max_examples"].parse, "100000"),
    Setting("catch_up_idle_ms", "--catch-up-idle-ms", "FL_AGGREGATOR_CATCH_UP_IDLE_MS",
            "start-up reads end after this long without a record (ms)",
            RANGES["catch_up_idle_ms"].parse, "2000"),
    Setting("park_ms", "--park-ms", "FL_AGGREGATOR_PARK_MS",
            "how long an update may wait for its round's plan before it is rejected (ms)",
            RANGES["park_ms"].parse, "10000"),
    Setting("park_limit", "--park-limit", "FL_AGGREGATOR_PARK_LIMIT",
            "updates waiting for their plan at most", RANGES["park_limit"].parse, "10000"),
    Setting("max_robust_bytes", "--max-robust-bytes", "FL_AGGREGATOR_MAX_ROBUST_BYTES",
            "bytes a median/trimmed_mean round may hold (goal x params x 4); a plan needing "
            "more is refused", RANGES["max_robust_bytes"].parse, str(512 * MIB)),
    Setting("example_history", "--example-history", "FL_AGGREGATOR_EXAMPLE_HISTORY",
            "devices whose last example count is remembered (least recent forgotten first)",
            RANGES["example_history"].parse, "100000"),
    Setting("example_growth", "--example-growth", "FL_AGGREGATOR_EXAMPLE_GROWTH",
            "a device's example count may grow this factor between reports; more is clamped",
            RANGES["example_growth"].parse, "2"),
)  # fmt: skip
"""Every setting of :class:`AggregatorConfig`, in ``--help`` order."""
