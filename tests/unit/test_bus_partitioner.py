"""The in-memory log partitions keys exactly as Kafka's Java client does."""

import pytest

from flbus.mqtt_match import matches
from flbus.partitioner import murmur2

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # vectors from Kafka's own UtilsTest, as signed 32-bit ints
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka_vectors(key: bytes, expected: int) -> None:
    h = murmur2(key)
    assert (h - (1 << 32) if h >= 1 << 31 else h) == expected


@pytest.mark.parametrize(
    ("flt", "topic", "ok"),
    [
        ("fl/v1/+/+/checkin", "fl/v1/h0/d1/checkin", True),
        ("fl/v1/+/+/checkin", "fl/v1/h0/checkin", False),
        ("fl/v1/#", "fl/v1", True),
        ("fl/#", "fl/v1/h0/d1/upload", True),
        ("+/x", "$SYS/x", False),
        ("fl/v1/h0/+", "fl/v1/h0/d1/task", False),
    ],
)
def test_mqtt_filter_matching(flt: str, topic: str, ok: bool) -> None:
    assert matches(flt, topic) is ok
