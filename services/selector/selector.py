"""Device-plane handlers: a function of (message, latest plans, now, config) -> outputs.

Nothing here touches a bus, a clock or a logger; the shell (``app``) publishes
what these return. Every replica with the same plans and clock gives the same
answer, which is what lets any number of them share the device topics.
"""

from __future__ import annotations

from collections.abc import Mapping

from flbus.port import Record
from flcore.admission import Admit, admit, stable_uniform
from flcore.tokens import issue_token
from schemas import CheckIn, RetryAfter, RoundPlan, Task, decode, encode
from schemas.errors import SchemaError
from schemas.topics import (
    CHECKIN,
    EVAL,
    KAFKA_CHECKINS,
    UPLOAD,
    DeviceTopic,
    parse_device_topic,
    task_topic,
)
from services.selector.config import SelectorConfig
from services.selector.guards import oversized
from services.selector.outputs import Out, ToDevice, ToLog, audit
from services.selector.uploads import handle_eval, handle_upload

SELECTING = "selecting"
ENDED = frozenset({"done", "abandoned"})


def handle_device(
    record: Record,
    plans: Mapping[str, RoundPlan],
    now_ms: int,
    config: SelectorConfig,
    checkin: CheckIn | None = None,
) -> list[Out]:
    """Route one device-plane message to its handler; bad topics become audit events.

    ``checkin`` is the record's check-in when the caller has decoded it already.
    """
    try:
        where = parse_device_topic(record.topic)
    except SchemaError as exc:
        return [audit("message.rejected", type(exc).__name__, str(exc), now_ms)]
    if where.hospital not in config.hospitals:
        # Refused before anything is decoded or forwarded: no Kafka topic for made-up hospitals.
        once = ("unknown_hospital", where.hospital, where.device)
        detail = f"hospital {where.hospital!r} is not one of {len(config.hospitals)} configured"
        return [
            audit("message.rejected", "unknown_hospital", detail, now_ms, where=where, once=once)
        ]
    if len(record.value) > config.max_forward_bytes:
        detail = f"{len(record.value)} bytes, more than {config.max_forward_bytes}"
        return [audit("message.rejected", "message_too_large", detail, now_ms, where=where)]
    if where.leaf == CHECKIN:
        return handle_checkin(where, record.value, plans, now_ms, config, checkin)
    if where.leaf == UPLOAD:
        return handle_upload(where, record, now_ms, config)
    if where.leaf == EVAL:
        return handle_eval(where, record.value, now_ms, config)
    return [audit("message.rejected", "unexpected_topic", record.topic, now_ms)]


def handle_checkin(
    where: DeviceTopic,
    value: bytes,
    plans: Mapping[str, RoundPlan],
    now_ms: int,
    config: SelectorConfig,
    checkin: CheckIn | None = None,
) -> list[Out]:
    """Answer a CheckIn with a Task or RetryAfter per model; forward it and audit admissions.

    ``checkin`` is ``value`` decoded, when the caller has decoded it already.
    """
    if checkin is None:
        try:
            checkin = decode(value, CheckIn)
        except SchemaError as exc:
            return [audit("message.rejected", type(exc).__name__, str(exc), now_ms, where=where)]
    if (checkin.hospital_id, checkin.device_id) != (where.hospital, where.device):
        detail = f"check-in says {checkin.hospital_id}/{checkin.device_id}"
        return [audit("message.rejected", "topic_mismatch", detail, now_ms, where=where)]
    refusal = _refusal(checkin, config)
    if refusal is not None:
        return [audit("message.rejected", *refusal, now_ms, where=where)]
    outs: list[Out] = [ToLog(KAFKA_CHECKINS, value, checkin.device_id.encode(), "checkin")]
    for model in dict.fromkeys(checkin.models):
        outs.extend(answer(checkin, model, plans.get(model), now_ms, config))
    return outs


def awaiting_plan(checkin: CheckIn, plans: Mapping[str, RoundPlan], config: SelectorConfig) -> bool:
    """Whether ``checkin`` is acceptable but no model of it has a selecting plan."""
    if _refusal(checkin, config) is not None:
        return False
    return not any(p.state == SELECTING for m in checkin.models if (p := plans.get(m)))


def plan_pending(checkin: CheckIn, now_ms: int, config: SelectorConfig) -> list[Out]:
    """A short RetryAfter per model: this replica may lag a plan and has no room to wait."""
    topic = task_topic(checkin.hospital_id, checkin.device_id)
    outs: list[Out] = []
    for model in dict.fromkeys(checkin.models):
        jitter = stable_uniform(model, checkin.hospital_id, checkin.device_id, now_ms, salt="park")
        at = now_ms + config.min_backoff_ms + int(jitter * max(config.plan_wait_ms, 1))
        outs.append(_retry(topic, checkin, model, at, "plan_pending"))
    return outs


def rate_retry(checkin: CheckIn, at_ms: int) -> list[Out]:
    """A RetryAfter per model for a device that checks in too often."""
    topic = task_topic(checkin.hospital_id, checkin.device_id)
    return [_retry(topic, checkin, m, at_ms, "rate_limited") for m in dict.fromkeys(checkin.models)]


def _refusal(checkin: CheckIn, config: SelectorConfig) -> tuple[str, str] | None:
    """Why a decoded check-in is too big to act on (reason, detail), or None."""
    if len(checkin.models) > config.max_models_per_checkin:
        n, limit = len(checkin.models), config.max_models_per_checkin
        return "too_many_models", f"{n} models listed, at most {limit} answered"
    long = oversized(checkin, config.max_field_chars)
    return None if long is None else ("field_too_long", long)


def answer(
    checkin: CheckIn, model: str, plan: RoundPlan | None, now_ms: int, config: SelectorConfig
) -> list[Out]:
    """The answer to one device for one model: Task plus admission audit, or RetryAfter."""
    hospital, device = checkin.hospital_id, checkin.device_id
    topic = task_topic(hospital, device)
    if plan is None or plan.state in ENDED:
        jitter = stable_uniform(
            model, hospital, device, now_ms // config.no_round_retry_ms, salt="no-round"
        )
        at = now_ms + config.no_round_retry_ms + int(jitter * config.retry_jitter_ms)
        return [_retry(topic, checkin, model, at, "no_open_round")]
    if plan.state != SELECTING or not _wanted(plan, hospital):
        jitter = stable_uniform(model, plan.round_id, hospital, device, salt="retry")
        at = max(plan.deadline_ms, now_ms + config.min_backoff_ms)
        reason = "round_in_progress" if plan.state != SELECTING else "hospital_not_in_round"
        return [_retry(topic, checkin, model, at + int(jitter * config.retry_jitter_ms), reason)]
    decision = admit(
        device_id=device,
        hospital_id=hospital,
        model=model,
        round_id=plan.round_id,
        admission_probability=plan.admission_probability,
        eligible=config.eligibility.eligible(checkin),
        now_ms=now_ms,
        selection_deadline_ms=plan.deadline_ms - config.selection_cutoff_ms,
        retry_jitter_ms=config.retry_jitter_ms,
        min_backoff_ms=config.min_backoff_ms,
    )
    if not isinstance(decision, Admit):
        return [_retry(topic, checkin, model, decision.at_ms, str(decision.reason))]
    task = task_for(plan, hospital, device, now_ms, config.token_secret)
    return [
        ToDevice(topic, encode(task), "task"),
        audit(
            "device.admitted",
            "selected",
            f"draw={decision.draw:.6f} p={plan.admission_probability:.6f}",
            now_ms,
            model=model,
            round_id=plan.round_id,
            hospital=hospital,
            device=device,
        ),
    ]


def task_for(plan: RoundPlan, hospital: str, device: str, now_ms: int, secret: bytes) -> Task:
    """The Task admitting ``device`` to ``plan``'s round, with a token expiring at its deadline."""
    token = issue_token(
        model=plan.model,
        round_id=plan.round_id,
        base_version=plan.base_version,
        device_id=device,
        hospital_id=hospital,
        expires_at_ms=plan.deadline_ms,
        secret=secret,
    )
    return Task(
        device_id=device,
        hospital_id=hospital,
        model=plan.model,
        round_id=plan.round_id,
        base_version=plan.base_version,
        local_epochs=plan.local_epochs,
        max_steps=plan.max_steps,
        batch_size=plan.batch_size,
        learning_rate=plan.learning_rate,
        clip_norm=plan.clip_norm,
        noise_multiplier=plan.noise_multiplier,
        deadline_ms=plan.deadline_ms,
        token=token,
        issued_at_ms=now_ms,
    )


def _wanted(plan: RoundPlan, hospital: str) -> bool:
    return any(h == hospital and t > 0 for h, t in zip(plan.hospitals, plan.targets, strict=True))


def _retry(topic: str, checkin: CheckIn, model: str, at_ms: int, reason: str) -> ToDevice:
    msg = RetryAfter(checkin.device_id, checkin.hospital_id, model, at_ms, reason)
    return ToDevice(topic, encode(msg), "retry_after")
