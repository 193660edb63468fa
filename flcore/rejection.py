"""Typed rejection of a device update: failures are data, counted and logged by the shell."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RejectReason(StrEnum):
    """Why an update, its token or a partial was refused; values are stable wire strings."""

    BAD_TOKEN = "bad_token"
    EXPIRED_TOKEN = "expired_token"
    DUPLICATE = "duplicate"
    CLOSED_ROUND = "closed_round"
    UNKNOWN_ROUND = "unknown_round"
    WRONG_BASE_VERSION = "wrong_base_version"
    WRONG_MODEL = "wrong_model"
    WRONG_HOSPITAL = "wrong_hospital"
    BAD_SHAPE = "bad_shape"
    NON_FINITE = "non_finite"
    NORM_EXCEEDED = "norm_exceeded"
    NO_EXAMPLES = "no_examples"
    TOO_MANY_EXAMPLES = "too_many_examples"
    IMPLAUSIBLE_COUNT = "implausible_count"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused update: a machine-readable reason and a human-readable detail."""

    reason: RejectReason
    detail: str
