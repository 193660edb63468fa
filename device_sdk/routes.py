"""Which MQTT topics a device follows, and what a received topic carries (pure).

Per installed model: the retained round plan, the retained model version
(manifest and chunks) and the retained artifact bundle chunks; and the
device's own task topic, where the selector answers a check-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from schemas.topics import MQTT_ROOT, model_manifest_topic, plan_topic, task_topic

RouteKind = Literal["task", "plan", "version", "bundle"]


@dataclass(frozen=True)
class Route:
    """What a topic carries for the device: a task (or retry), or a model's broadcast."""

    kind: RouteKind
    model: str = ""  # empty for "task": the message names its model


def model_chunks_prefix(model: str) -> str:
    """Prefix of the retained ``chunks/<seq>`` topics of a model version."""
    return model_manifest_topic(model).rsplit("/", 1)[0] + "/chunks/"


def artifact_prefix(model: str) -> str:
    """Prefix of the retained artifact bundle chunk topics of ``model``."""
    return f"{MQTT_ROOT}/models/{model}/artifacts/0/bundle/"


def topic_filters(hospital_id: str, device_id: str, models: Sequence[str]) -> list[str]:
    """Every MQTT topic filter a device with ``models`` installed subscribes to."""
    filters = [task_topic(hospital_id, device_id)]
    for m in models:
        filters += [
            plan_topic(m),
            model_manifest_topic(m),
            model_chunks_prefix(m) + "+",
            artifact_prefix(m) + "+",
        ]
    return filters


def route(topic: str, hospital_id: str, device_id: str, models: Sequence[str]) -> Route | None:
    """What ``topic`` carries for this device, or None if it is none of its topics."""
    if topic == task_topic(hospital_id, device_id):
        return Route("task")
    for m in models:
        if topic == plan_topic(m):
            return Route("plan", m)
        if topic == model_manifest_topic(m) or topic.startswith(model_chunks_prefix(m)):
            return Route("version", m)
        if topic.startswith(artifact_prefix(m)):
            return Route("bundle", m)
    return None
