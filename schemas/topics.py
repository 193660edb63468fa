"""Topic names of both planes, versioned, built and parsed in one place.

MQTT (device plane) topics are namespaced by hospital and device so broker ACLs
can confine a device to ``fl/v1/{hospital}/{device}/#`` (plus read-only
``fl/v1/models/#``). Kafka (service plane) topics are dotted names. Ids that
go into a topic must match ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``: no ``/``, ``+``,
``#`` (MQTT separators and wildcards) and no ``.`` (Kafka name collisions).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas._base import ID_RULE, is_valid_id
from schemas.errors import ValidationError

VERSION = "v1"
MQTT_ROOT = f"fl/{VERSION}"
SHARED_GROUP = "selectors"

# Device-plane leaf names under fl/v1/{hospital}/{device}/.
CHECKIN = "checkin"  # device -> selector: CheckIn, QoS 1
TASK = "task"  # selector -> device: Task or RetryAfter, QoS 1
UPLOAD = "upload"  # device -> selector: Chunk (of a ModelUpdate) or TrainingFailure, QoS 1
EVAL = "eval"  # device -> selector: EvaluationReport, QoS 1
DEVICE_LEAVES = (CHECKIN, TASK, UPLOAD, EVAL)

# Kafka service-plane topics.
KAFKA_ROUND_PLANS = f"fl.{VERSION}.round-plans"  # RoundPlan, key=model, compacted
KAFKA_CHECKINS = f"fl.{VERSION}.checkins"  # CheckIn, key=model
KAFKA_UPDATES_PREFIX = f"fl.{VERSION}.updates."  # + hospital: Chunk, key=device_id
KAFKA_PARTIALS_PREFIX = (
    f"fl.{VERSION}.partials."  # + hospital: Chunk of PartialAggregate, key=model
)
KAFKA_MODEL_VERSIONS = f"fl.{VERSION}.model-versions"  # Chunk of ModelVersion, key=model
KAFKA_EVALUATIONS = f"fl.{VERSION}.evaluations"  # EvaluationReport, key=model
KAFKA_ARTIFACTS = f"fl.{VERSION}.artifacts"  # Chunk of ArtifactBundle, key=model
KAFKA_AUDIT = f"fl.{VERSION}.audit"  # AuditEvent, key=model (or "" )
KAFKA_DEAD_LETTERS = f"fl.{VERSION}.dead-letters"  # DeadLetter, key=origin topic
KAFKA_COMPACTED = frozenset({KAFKA_ROUND_PLANS})


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is safe inside a topic name, else raise ValidationError."""
    if not isinstance(value, str) or not is_valid_id(value):
        raise ValidationError(what, f"must be {ID_RULE}, got {value!r}")
    return value


def device_topic(hospital: str, device: str, leaf: str) -> str:
    """``fl/v1/{hospital}/{device}/{leaf}`` for one of DEVICE_LEAVES."""
    if leaf not in DEVICE_LEAVES:
        raise ValueError(f"unknown device topic leaf {leaf!r}; expected one of {DEVICE_LEAVES}")
    return f"{MQTT_ROOT}/{check_id(hospital, 'hospital')}/{check_id(device, 'device')}/{leaf}"


def checkin_topic(hospital: str, device: str) -> str:
    """Where a device publishes its CheckIn."""
    return device_topic(hospital, device, CHECKIN)


def task_topic(hospital: str, device: str) -> str:
    """Where the selector answers a device with a Task or RetryAfter."""
    return device_topic(hospital, device, TASK)


def upload_topic(hospital: str, device: str) -> str:
    """Where a device publishes update Chunks or a TrainingFailure."""
    return device_topic(hospital, device, UPLOAD)


def eval_topic(hospital: str, device: str) -> str:
    """Where a device publishes EvaluationReports."""
    return device_topic(hospital, device, EVAL)


def shared_subscription(leaf: str, group: str = SHARED_GROUP) -> str:
    """MQTT v5 shared subscription over every device's ``leaf`` topic."""
    if leaf not in DEVICE_LEAVES:
        raise ValueError(f"unknown device topic leaf {leaf!r}")
    return f"$share/{check_id(group, 'group')}/{MQTT_ROOT}/+/+/{leaf}"


def plan_topic(model: str) -> str:
    """Retained: the latest RoundPlan of ``model``; devices wake on a new ``selecting`` plan."""
    return f"{MQTT_ROOT}/models/{check_id(model, 'model')}/plan"


def model_manifest_topic(model: str) -> str:
    """Retained: the first Chunk (seq 0) of the current ModelVersion of ``model``."""
    return f"{MQTT_ROOT}/models/{check_id(model, 'model')}/current"


def model_chunk_topic(model: str, seq: int) -> str:
    """Retained: Chunk ``seq`` (>= 1) of the current ModelVersion of ``model``."""
    if seq < 1:
        raise ValueError("seq 0 lives on the manifest topic")
    return f"{MQTT_ROOT}/models/{check_id(model, 'model')}/chunks/{seq}"


def artifact_topic(model: str, version: int, artifact: str, seq: int) -> str:
    """Retained: Chunk ``seq`` of a training artifact (e.g. ``training_model``)."""
    if version < 0 or seq < 0:
        raise ValueError("version and seq must be >= 0")
    return (
        f"{MQTT_ROOT}/models/{check_id(model, 'model')}/artifacts/{version}/"
        f"{check_id(artifact, 'artifact')}/{seq}"
    )


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device-plane topic."""

    hospital: str
    device: str
    leaf: str


def parse_device_topic(topic: str) -> DeviceTopic:
    """Parse ``fl/v1/{hospital}/{device}/{leaf}``; raise ValidationError otherwise."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != MQTT_ROOT or parts[4] not in DEVICE_LEAVES:
        raise ValidationError(
            "topic", f"not a {MQTT_ROOT}/<hospital>/<device>/<leaf> topic: {topic!r}"
        )
    return DeviceTopic(check_id(parts[2], "hospital"), check_id(parts[3], "device"), parts[4])


def updates_topic(hospital: str) -> str:
    """Kafka topic carrying one hospital's update Chunks (key = device_id)."""
    return KAFKA_UPDATES_PREFIX + check_id(hospital, "hospital")


def parse_updates_topic(topic: str) -> str:
    """Hospital id of a ``fl.v1.updates.{hospital}`` topic."""
    if not topic.startswith(KAFKA_UPDATES_PREFIX):
        raise ValidationError("topic", f"not an updates topic: {topic!r}")
    return check_id(topic[len(KAFKA_UPDATES_PREFIX) :], "hospital")


def partials_topic(hospital: str) -> str:
    """Kafka topic carrying one hospital's partial aggregates (one topic per hospital, so a
    broker ACL can let each aggregator write its own and nobody else's)."""
    return KAFKA_PARTIALS_PREFIX + check_id(hospital, "hospital")


def parse_partials_topic(topic: str) -> str:
    """Hospital id of a ``fl.v1.partials.{hospital}`` topic."""
    if not topic.startswith(KAFKA_PARTIALS_PREFIX):
        raise ValidationError("topic", f"not a partials topic: {topic!r}")
    return check_id(topic[len(KAFKA_PARTIALS_PREFIX) :], "hospital")
