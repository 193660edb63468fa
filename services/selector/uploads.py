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
from services.selector.guards import oversized
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
    """Forward a token-checked update Chunk or TrainingFailure to the hospital's updates.

    A refused upload stream is audited once (its first refused chunk); the rest
    of its chunks are only counted, so a big forged upload is one audit event.
    """
    try:
        msg: object = decode(record.value)
    except SchemaError as exc:
        return [audit("message.rejected", type(exc).__name__, str(exc), now_ms, where=where)]
    key = where.device.encode()
    target = updates_topic(where.hospital)
    if isinstance(msg, TrainingFailure):
        once: tuple[object, ...] = (
            "failure",
            where.hospital,
            where.device,
            msg.model,
            msg.round_id,
        )
        if (msg.hospital_id, msg.device_id) != (where.hospital, where.device):
            detail = f"failure says {msg.hospital_id}/{msg.device_id}"
            return [
                _refused("topic_mismatch", detail, now_ms, msg.model, msg.round_id, where, once)
            ]
        long = oversized(msg, config.max_field_chars)
        if long is not None:
            return [_refused("field_too_long", long, now_ms, msg.model, msg.round_id, where, once)]
        refused = _check_token(record, where, now_ms, config, "training failure", once)
        if refused is not None:
            return refused
        claims = parse_upload_headers(record.headers)
        if (claims.model, claims.round_id) != (msg.model, msg.round_id):
            detail = f"token for {claims.model}/{claims.round_id}, failure of {msg.model}"
            return [_refused("bad_token", detail, now_ms, msg.model, msg.round_id, where, once)]
        return [ToLog(target, record.value, key, "training_failure", record.headers)]
    if not isinstance(msg, Chunk) or msg.kind != UPDATE_KIND:
        what = type(msg).__name__ + (f"({msg.kind})" if isinstance(msg, Chunk) else "")
        return [audit("message.rejected", "unexpected_message", what, now_ms, where=where)]
    once = ("upload", where.hospital, where.device, msg.stream_id)
    what = f"chunk {msg.seq}/{msg.total} of {msg.stream_id}"
    refused = _check_token(record, where, now_ms, config, what, once)
    if refused is not None:
        return refused
    return [ToLog(target, record.value, key, "update_chunk", record.headers)]


def _check_token(
    record: Record,
    where: DeviceTopic,
    now_ms: int,
    config: SelectorConfig,
    what: str,
    once: tuple[object, ...],
) -> list[Out] | None:
    """None when ``record``'s header claims carry a valid token for this device, else the audit."""
    claims = parse_claims(record)
    if isinstance(claims, str):
        model, round_id = record.header(MODEL), record.header(ROUND)
        name = model.decode(errors="replace") if model else ""
        return [_refused("bad_token", claims, now_ms, name, _int_or_none(round_id), where, once)]
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
    if rejection is None:
        return None
    detail = f"{what}: {rejection.detail}"
    reason = str(rejection.reason)
    return [_refused(reason, detail, now_ms, claims.model, claims.round_id, where, once)]


def _refused(
    reason: str,
    detail: str,
    now_ms: int,
    model: str,
    round_id: int,
    where: DeviceTopic,
    once: tuple[object, ...],
) -> Out:
    return audit(
        "update.rejected", reason, detail, now_ms, model=model, round_id=round_id, where=where,
        once=once,
    )  # fmt: skip


def handle_eval(where: DeviceTopic, value: bytes, now_ms: int, config: SelectorConfig) -> list[Out]:
    """Forward an EvaluationReport to ``fl.v1.evaluations`` keyed by model."""
    try:
        report = decode(value, EvaluationReport)
    except SchemaError as exc:
        return [audit("message.rejected", type(exc).__name__, str(exc), now_ms, where=where)]
    if (report.hospital_id, report.device_id) != (where.hospital, where.device):
        detail = f"report says {report.hospital_id}/{report.device_id}"
        return [audit("message.rejected", "topic_mismatch", detail, now_ms, where=where)]
    long = oversized(report, config.max_field_chars)
    if long is not None:
        return [audit("message.rejected", "field_too_long", long, now_ms, where=where)]
    return [ToLog(KAFKA_EVALUATIONS, value, report.model.encode(), "evaluation")]


def _int_or_none(raw: bytes | None) -> int:
    try:
        return int(raw) if raw is not None else -1
    except ValueError:
        return -1
