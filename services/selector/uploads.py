"""Upload and evaluation handlers: check each chunk's token, bridge it into Kafka unchanged.

Upload chunks carry their claims as MQTT v5 user properties (``token`` as hex,
``model``, ``round``, ``base_version`` as decimal); see :mod:`schemas.headers`.
The token is checked on every chunk against the topic's hospital and device,
so no replica needs to remember or reassemble anything.
"""

from __future__ import annotations

from flbus.port import Record
from flcore.tokens import verify_token
from schemas import Chunk, EvaluationReport, TrainingFailure, decode
from schemas.errors import SchemaError, ValidationError
from schemas.headers import MODEL, ROUND, UploadClaims, parse_upload_headers
from schemas.topics import KAFKA_EVALUATIONS, DeviceTopic, updates_topic
from services.selector.config import SelectorConfig
from services.selector.outputs import Out, ToLog, audit

UPDATE_KIND = "ModelUpdate"
Claims = UploadClaims


def parse_claims(record: Record) -> Claims | str:
    """The claims in ``record``'s headers, or a description of what is wrong with them."""
    try:
        return parse_upload_headers(record.headers)
    except ValidationError as exc:
        return f"malformed headers: {exc}"


def handle_upload(
    where: DeviceTopic, record: Record, now_ms: int, config: SelectorConfig
) -> list[Out]:
    """Forward a token-checked update Chunk or a TrainingFailure to the hospital's updates."""
    try:
        msg: object = decode(record.value)
    except SchemaError as exc:
        return [audit("message.rejected", type(exc).__name__, str(exc), now_ms, where=where)]
    key = where.device.encode()
    target = updates_topic(where.hospital)
    if isinstance(msg, TrainingFailure):
        if (msg.hospital_id, msg.device_id) != (where.hospital, where.device):
            detail = f"failure says {msg.hospital_id}/{msg.device_id}"
            return [
                audit(
                    "update.rejected",
                    "topic_mismatch",
                    detail,
                    now_ms,
                    model=msg.model,
                    round_id=msg.round_id,
                    where=where,
                )
            ]
        return [ToLog(target, record.value, key, "training_failure", record.headers)]
    if not isinstance(msg, Chunk) or msg.kind != UPDATE_KIND:
        what = type(msg).__name__ + (f"({msg.kind})" if isinstance(msg, Chunk) else "")
        return [audit("message.rejected", "unexpected_message", what, now_ms, where=where)]
    claims = parse_claims(record)
    if isinstance(claims, str):
        model, round_id = record.header(MODEL), record.header(ROUND)
        return [
            audit(
                "update.rejected",
                "bad_token",
                claims,
                now_ms,
                model=model.decode(errors="replace") if model else "",
                round_id=_int_or_none(round_id),
                where=where,
            )
        ]
    rejection = verify_token(
        claims.token,
        model=claims.model,
        round_id=claims.round_id,
        base_version=claims.base_version,
        device_id=where.device,
        hospital_id=where.hospital,
        now_ms=now_ms,
        secret=config.token_secret,
    )
    if rejection is not None:
        detail = f"chunk {msg.seq}/{msg.total} of {msg.stream_id}: {rejection.detail}"
        return [
            audit(
                "update.rejected",
                str(rejection.reason),
                detail,
                now_ms,
                model=claims.model,
                round_id=claims.round_id,
                where=where,
            )
        ]
    return [ToLog(target, record.value, key, "update_chunk", record.headers)]


def handle_eval(where: DeviceTopic, value: bytes, now_ms: int) -> list[Out]:
    """Forward an EvaluationReport to ``fl.v1.evaluations`` keyed by model."""
    try:
        report = decode(value, EvaluationReport)
    except SchemaError as exc:
        return [audit("message.rejected", type(exc).__name__, str(exc), now_ms, where=where)]
    if (report.hospital_id, report.device_id) != (where.hospital, where.device):
        detail = f"report says {report.hospital_id}/{report.device_id}"
        return [audit("message.rejected", "topic_mismatch", detail, now_ms, where=where)]
    return [ToLog(KAFKA_EVALUATIONS, value, report.model.encode(), "evaluation")]


def _int_or_none(raw: bytes | None) -> int:
    try:
        return int(raw) if raw is not None else -1
    except ValueError:
        return -1
