"""A device follows exactly its own task topic and its models' retained broadcasts."""

from __future__ import annotations

import pytest

from device_sdk.routes import Route, route, topic_filters
from flbus.mqtt_match import matches
from schemas.topics import (
    artifact_topic,
    checkin_topic,
    model_chunk_topic,
    model_manifest_topic,
    plan_topic,
    task_topic,
)

pytestmark = pytest.mark.unit

MODELS = ("digits_mlp", "breast_cancer")


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (task_topic("h0", "d0"), Route("task")),
        (plan_topic("breast_cancer"), Route("plan", "breast_cancer")),
        (model_manifest_topic("digits_mlp"), Route("version", "digits_mlp")),
        (model_chunk_topic("digits_mlp", 3), Route("version", "digits_mlp")),
        (artifact_topic("breast_cancer", 0, "bundle", 2), Route("bundle", "breast_cancer")),
    ],
)
def test_route_names_what_each_followed_topic_carries(topic: str, expected: Route) -> None:
    assert route(topic, "h0", "d0", MODELS) == expected
    assert any(matches(f, topic) for f in topic_filters("h0", "d0", MODELS))


@pytest.mark.parametrize(
    "topic",
    [
        task_topic("h0", "d1"),  # another device's task
        task_topic("h1", "d0"),  # same device id in another hospital
        checkin_topic("h0", "d0"),  # the device's own outgoing topic
        plan_topic("digits_cnn"),  # a model not installed
    ],
)
def test_route_ignores_topics_that_are_not_the_devices(topic: str) -> None:
    assert route(topic, "h0", "d0", MODELS) is None
    assert not any(matches(f, topic) for f in topic_filters("h0", "d0", MODELS))
