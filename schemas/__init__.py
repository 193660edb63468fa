"""Message types, Arrow schemas, encode/decode, chunking and topic names (no I/O)."""

from schemas.artifacts import ArtifactBundle
from schemas.audit import AuditEvent
from schemas.checkin import CheckIn
from schemas.chunk import Chunk
from schemas.codec import MESSAGE_TYPES, decode, encode
from schemas.dead_letter import DeadLetter
from schemas.evaluation import EvaluationReport
from schemas.model_version import ModelVersion
from schemas.partial import PartialAggregate
from schemas.round_plan import RoundPlan
from schemas.task import RetryAfter, Task
from schemas.tensors import Tensors, TensorSpec
from schemas.update import ModelUpdate, TrainingFailure

__all__ = [
    "MESSAGE_TYPES",
    "ArtifactBundle",
    "AuditEvent",
    "CheckIn",
    "Chunk",
    "DeadLetter",
    "EvaluationReport",
    "ModelUpdate",
    "ModelVersion",
    "PartialAggregate",
    "RetryAfter",
    "RoundPlan",
    "Task",
    "TensorSpec",
    "Tensors",
    "TrainingFailure",
    "decode",
    "encode",
]
