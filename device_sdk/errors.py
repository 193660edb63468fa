"""Exceptions of the device SDK; each maps to a failure the device reports for a round.

Hierarchy::

    SdkError                      base: the round fails, nothing is uploaded
    ├── ArtifactError             artifacts or checkpoint missing, corrupted or inconsistent
    ├── UnknownModelError         a task or a store call names a model this device lacks
    ├── WeightsError              global weights of the wrong length, shape or non-finite
    ├── DataError                 local examples unusable for this model
    │   ├── FeatureError          wrong feature width, or non-finite features
    │   └── LabelError            a label outside [0, classes)
    ├── TrainingDivergedError     NaN/inf loss or weights while training
    ├── ModelUnavailableError     the task's base version or artifacts missed the deadline
    ├── DeadlineMissedError       training ended after the task's deadline
    └── StoreError                the local example store failed (sqlite, naive datetimes)

ORT and sqlite exceptions are translated into these at the point of the call
(see ``ort_session.ort_errors`` and ``store``); callers never see onnxruntime types.
"""

from __future__ import annotations


class SdkError(Exception):
    """Base class of device SDK errors; ``reason`` is a short stable code for reports."""

    reason = "sdk_error"


class ArtifactError(SdkError):
    """Training artifacts or checkpoint are missing, corrupted or do not fit together."""

    reason = "artifact_error"


class UnknownModelError(SdkError):
    """The named model is not installed on this device (or not known to the store)."""

    reason = "unknown_model"


class WeightsError(SdkError):
    """Global weights do not match the model (length, shape, dtype) or are not finite."""

    reason = "bad_weights"


class DataError(SdkError):
    """Local examples cannot be used with this model."""

    reason = "bad_data"


class FeatureError(DataError):
    """Features have the wrong width or contain NaN/inf."""

    reason = "bad_features"


class LabelError(DataError):
    """A label is outside the model's classes."""

    reason = "bad_labels"


class TrainingDivergedError(SdkError):
    """Loss or weights became NaN/inf during local training."""

    reason = "diverged"

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class ModelUnavailableError(SdkError):
    """The task's base version or its artifacts did not arrive before the deadline."""

    reason = "model_unavailable"


class DeadlineMissedError(SdkError):
    """Training finished after the task's deadline; the update would be refused."""

    reason = "deadline_missed"


class StoreError(SdkError):
    """The local example store failed."""

    reason = "store_error"
