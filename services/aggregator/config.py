"""Typed, validated settings of one hospital aggregator."""

from __future__ import annotations

from dataclasses import dataclass

from schemas._base import ID_RULE, is_valid_id
from schemas.chunking import DEFAULT_TIMEOUT_MS
from services.aggregator.errors import SettingError

#: Setting name -> how a user spells it (CLI flag / environment variable).
SETTINGS: dict[str, str] = {
    "hospital": "--hospital / FL_HOSPITAL",
    "kafka_bootstrap": "--kafka-bootstrap / FL_KAFKA_BOOTSTRAP",
    "token_secret": "--token-secret / FL_TOKEN_SECRET",
    "tick_ms": "--tick-ms / FL_AGGREGATOR_TICK_MS",
    "group": "--group / FL_AGGREGATOR_GROUP",
    "stream_timeout_ms": "--stream-timeout-ms / FL_AGGREGATOR_STREAM_TIMEOUT_MS",
    "catch_up_idle_ms": "--catch-up-idle-ms / FL_AGGREGATOR_CATCH_UP_IDLE_MS",
    "park_ms": "--park-ms / FL_AGGREGATOR_PARK_MS",
    "park_limit": "--park-limit / FL_AGGREGATOR_PARK_LIMIT",
}


def _bad(name: str, problem: str) -> SettingError:
    return SettingError(f"{name} ({SETTINGS[name]})", problem)


@dataclass(frozen=True, slots=True)
class AggregatorConfig:
    """Everything one aggregator process needs; validated on construction."""

    hospital: str
    token_secret: bytes
    kafka_bootstrap: str = "127.0.0.1:9092"
    group: str = ""  # empty: aggregator.<hospital>
    tick_ms: int = 50  # how often deadlines are checked
    stream_timeout_ms: int = DEFAULT_TIMEOUT_MS  # an upload idle this long is dropped
    catch_up_idle_ms: int = 2_000  # start-up reads stop after this long without a record
    park_ms: int = 10_000  # how long an update may wait for its round's plan
    park_limit: int = 10_000  # updates waiting for a plan at most (then rejected at once)

    def __post_init__(self) -> None:
        if not isinstance(self.hospital, str) or not is_valid_id(self.hospital):
            raise _bad("hospital", f"must be {ID_RULE}, got {self.hospital!r}")
        if not isinstance(self.token_secret, bytes) or not self.token_secret:
            raise _bad("token_secret", "must be a non-empty secret shared with the selectors")
        hosts = [h.strip() for h in self.kafka_bootstrap.split(",")]
        if not all(h.rpartition(":")[2].isdigit() and h.rpartition(":")[0] for h in hosts):
            raise _bad(
                "kafka_bootstrap", f"must be host:port[,host:port], got {self.kafka_bootstrap!r}"
            )
        if self.group and not all(c.isalnum() or c in "._-" for c in self.group):
            raise _bad("group", f"must be [A-Za-z0-9._-], got {self.group!r}")
        for name, low in (
            ("tick_ms", 1),
            ("stream_timeout_ms", 1),
            ("catch_up_idle_ms", 0),
            ("park_ms", 0),
            ("park_limit", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise _bad(name, f"must be an integer >= {low}, got {value!r}")

    @property
    def consumer_group(self) -> str:
        """The consumer group of the updates topic."""
        return self.group or f"aggregator.{self.hospital}"
