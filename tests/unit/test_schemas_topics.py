"""Topic names: built in one place, ids validated, parse inverts build."""

from __future__ import annotations

import pytest

from schemas import topics
from schemas.errors import ValidationError

pytestmark = pytest.mark.unit


def test_device_topics_round_trip() -> None:
    t = topics.upload_topic("hosp_a", "dev-1")
    assert t == "fl/v1/hosp_a/dev-1/upload"
    assert topics.parse_device_topic(t) == topics.DeviceTopic("hosp_a", "dev-1", "upload")
    assert topics.checkin_topic("h", "d") == "fl/v1/h/d/checkin"
    assert topics.task_topic("h", "d") == "fl/v1/h/d/task"
    assert topics.eval_topic("h", "d") == "fl/v1/h/d/eval"


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "a.b", "x" * 65, "-a", "a b"])
def test_topic_ids_with_separators_or_wildcards_are_rejected(bad: str) -> None:
    with pytest.raises(ValidationError, match="hospital"):
        topics.checkin_topic(bad, "dev-1")
    with pytest.raises(ValidationError):
        topics.updates_topic(bad)


def test_shared_subscription_and_model_topics() -> None:
    assert topics.shared_subscription("checkin") == "$share/selectors/fl/v1/+/+/checkin"
    assert topics.model_manifest_topic("m1") == "fl/v1/models/m1/current"
    assert topics.model_chunk_topic("m1", 3) == "fl/v1/models/m1/chunks/3"
    assert topics.artifact_topic("m1", 2, "training_model", 0) == (
        "fl/v1/models/m1/artifacts/2/training_model/0"
    )
    with pytest.raises(ValueError):
        topics.model_chunk_topic("m1", 0)


def test_kafka_updates_topic_round_trip() -> None:
    assert topics.updates_topic("hosp_a") == "fl.v1.updates.hosp_a"
    assert topics.parse_updates_topic("fl.v1.updates.hosp_a") == "hosp_a"
    with pytest.raises(ValidationError):
        topics.parse_updates_topic("fl.v1.partials.hosp_a")


def test_kafka_partials_topic_round_trip() -> None:
    assert topics.partials_topic("hosp_a") == "fl.v1.partials.hosp_a"
    assert topics.parse_partials_topic("fl.v1.partials.hosp_a") == "hosp_a"
    for bad in ("fl.v1.updates.hosp_a", "fl.v1.partials", "fl.v1.partials.a.b"):
        with pytest.raises(ValidationError):
            topics.parse_partials_topic(bad)


def test_parse_device_topic_rejects_foreign_topics() -> None:
    for t in ("fl/v2/h/d/checkin", "fl/v1/h/d/other", "fl/v1/h/checkin"):
        with pytest.raises(ValidationError):
            topics.parse_device_topic(t)
