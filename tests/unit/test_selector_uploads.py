"""Selector upload/eval bridge: token checked on every chunk, bytes and headers unchanged."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np
import pytest

from flbus.memory import MemoryLog
from flbus.port import Published
from flcore.tokens import issue_token
from schemas import AuditEvent, EvaluationReport, ModelUpdate, Tensors, TrainingFailure, decode
from schemas import encode as encode_msg
from schemas.chunking import decode_chunked, encode_chunked
from schemas.headers import upload_headers
from schemas.topics import (
    KAFKA_AUDIT,
    KAFKA_CHECKINS,
    KAFKA_EVALUATIONS,
    checkin_topic,
    eval_topic,
    updates_topic,
    upload_topic,
)
from tests.support.forge import forged
from tests.unit.test_selector_checkin import (
    CONFIG,
    NOW,
    SECRET,
    checkin,
    drain,
    plan,
    running,
    until,
)

pytestmark = pytest.mark.unit

DEADLINE = NOW + 60_000


def token(device: str = "d1", hospital: str = "h0", **over: object) -> bytes:
    """A token as the selector issued it for round 3 of digits at base version 2."""
    kw: dict[str, object] = dict(
        model="digits", round_id=3, base_version=2, device_id=device, hospital_id=hospital,
        expires_at_ms=DEADLINE, secret=SECRET,
    )  # fmt: skip
    return issue_token(**{**kw, **over})  # type: ignore[arg-type]


def update_chunks(device: str = "d1", hospital: str = "h0") -> list[bytes]:
    """A ModelUpdate encoded as several small chunks."""
    tensors = Tensors.from_dict({"w": np.arange(600, dtype=np.float32).reshape(20, 30)})
    update = ModelUpdate(
        "digits", 3, 2, device, hospital, 40, 0.5, 1.0, token(device, hospital), "u1", tensors
    )
    chunks = encode_chunked(update, f"{hospital}-{device}-3", max_chunk_bytes=2048)
    assert len(chunks) > 1
    return chunks


async def test_selector_valid_upload_chunks_reach_hospital_updates_unchanged() -> None:
    async with running() as h:
        chunks = update_chunks()
        headers = upload_headers(token(), "digits", 3, 2)
        for data in chunks:
            await h.pubsub.publish(upload_topic("h0", "d1"), data, headers=headers)
        await until(lambda: h.selectors[0].stats["update_chunk"] == len(chunks))
        records = await drain(h.log, updates_topic("h0"))
        assert [r.value for r in records] == chunks
        assert all(r.key == b"d1" and r.headers == headers for r in records)
        assert decode_chunked([r.value for r in records], ModelUpdate).num_examples == 40
        assert await drain(h.log, KAFKA_AUDIT) == []


@pytest.mark.parametrize(
    ("tok", "claims", "topic", "reason"),
    [
        (
            token(secret=b"forged-secret-xx"),
            ("digits", 3, 2),
            upload_topic("h0", "d1"),
            "bad_token",
        ),
        (token(expires_at_ms=NOW - 1), ("digits", 3, 2), upload_topic("h0", "d1"), "expired_token"),
        (token(), ("digits", 4, 2), upload_topic("h0", "d1"), "bad_token"),
        (token(), ("digits", 3, 2), upload_topic("h0", "d2"), "bad_token"),
        (token(), ("digits", 3, 2), upload_topic("h1", "d1"), "bad_token"),
        (b"\x01" * 5, ("digits", 3, 2), upload_topic("h0", "d1"), "bad_token"),
    ],
    ids=["forged", "expired", "other-round", "other-device", "other-hospital", "garbled"],
)
async def test_selector_bad_upload_token_is_audited_and_not_forwarded(
    tok: bytes, claims: tuple[str, int, int], topic: str, reason: str
) -> None:
    async with running() as h:
        chunks = update_chunks()
        for data in chunks:
            await h.pubsub.publish(topic, data, headers=upload_headers(tok, *claims))
        await until(lambda: h.selectors[0].stats["update.rejected"] == len(chunks))
        events = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        # One audit event per refused stream, not one per chunk (the rest are counted).
        assert [(e.kind, e.reason, e.model) for e in events] == [
            ("update.rejected", reason, "digits")
        ]
        assert h.selectors[0].stats["audit.repeat_suppressed"] == len(chunks) - 1
        assert await drain(h.log, updates_topic("h0")) == []
        assert await drain(h.log, updates_topic("h1")) == []


async def test_selector_upload_without_headers_is_rejected() -> None:
    async with running() as h:
        await h.pubsub.publish(upload_topic("h0", "d1"), update_chunks()[0])
        await until(lambda: h.selectors[0].stats["update.rejected:bad_token"] == 1)
        assert await drain(h.log, updates_topic("h0")) == []


async def test_selector_garbage_is_audited_and_next_message_still_served() -> None:
    async with running() as h:
        await h.pubsub.publish(upload_topic("h0", "d1"), b"\x00garbage\xff" * 10)
        await h.pubsub.publish(eval_topic("h0", "d1"), encode_msg(failure()))  # wrong type
        headers = upload_headers(token(), "digits", 3, 2)
        for data in update_chunks():
            await h.pubsub.publish(upload_topic("h0", "d1"), data, headers=headers)
        await until(lambda: h.selectors[0].stats["update_chunk"] == len(update_chunks()))
        events = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        assert [(e.kind, e.reason) for e in events] == [
            ("message.rejected", "DecodeError"),
            ("message.rejected", "UnknownMessageError"),
        ]
        assert events[0].hospital_id == "h0" and events[0].device_id == "d1"
        assert h.selectors[0].stats["message.rejected"] == 2


def failure(device: str = "d1", hospital: str = "h0") -> TrainingFailure:
    """A device's report that it could not train round 3."""
    return TrainingFailure("digits", 3, device, hospital, "non_finite", "nan loss", NOW)


async def test_selector_training_failure_forwarded_only_from_its_own_topic() -> None:
    async with running() as h:
        headers = upload_headers(token(), "digits", 3, 2)
        await h.pubsub.publish(upload_topic("h0", "d1"), encode_msg(failure()), headers=headers)
        await h.pubsub.publish(upload_topic("h0", "d2"), encode_msg(failure()), headers=headers)
        await until(lambda: h.selectors[0].stats["device.messages"] == 2)
        [record] = await drain(h.log, updates_topic("h0"))
        assert record.key == b"d1" and decode(record.value, TrainingFailure).reason == "non_finite"
        [event] = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        assert (event.kind, event.reason, event.device_id) == (
            "update.rejected",
            "topic_mismatch",
            "d2",
        )


@pytest.mark.parametrize(
    "headers",
    [
        (),
        upload_headers(token(secret=b"forged-secret-xx"), "digits", 3, 2),
        upload_headers(token(round_id=2), "digits", 2, 2),
    ],
    ids=["no-token", "forged", "token-of-another-round"],
)
async def test_selector_training_failure_without_valid_token_is_refused(
    headers: tuple[tuple[str, bytes], ...],
) -> None:
    async with running() as h:
        await h.pubsub.publish(upload_topic("h0", "d1"), encode_msg(failure()), headers=headers)
        await until(lambda: h.selectors[0].stats["update.rejected"] == 1)
        assert await drain(h.log, updates_topic("h0")) == []
        [event] = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        assert (event.kind, event.reason) == ("update.rejected", "bad_token")


async def test_selector_messages_of_unconfigured_hospital_create_no_topic() -> None:
    async with running() as h:
        headers = upload_headers(token(hospital="made-up"), "digits", 3, 2)
        for data in update_chunks(hospital="made-up"):
            await h.pubsub.publish(upload_topic("made-up", "d1"), data, headers=headers)
        report = EvaluationReport("digits", 2, "d1", "made-up", 50, 0.4, 0.9, NOW)
        await h.pubsub.publish(eval_topic("made-up", "d1"), encode_msg(report))
        n = len(update_chunks()) + 1
        await until(lambda: h.selectors[0].stats["message.rejected:unknown_hospital"] == n)
        assert updates_topic("made-up") not in h.log._logs  # no topic was created for it
        assert await drain(h.log, KAFKA_EVALUATIONS) == []
        [event] = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        assert (event.reason, event.hospital_id) == ("unknown_hospital", "made-up")


async def test_selector_oversized_evaluation_is_not_forwarded() -> None:
    async with running() as h:
        report = EvaluationReport("digits", 2, "d1", "h0", 50, 0.4, 0.9, NOW)
        failure = TrainingFailure("digits", 3, "d1", "h0", "x", "y", NOW)
        await h.pubsub.publish(upload_topic("h0", "d1"), forged(failure, reason="x" * 5_000),
                               headers=upload_headers(token(), "digits", 3, 2))  # fmt: skip
        await h.pubsub.publish(eval_topic("h0", "d1"), encode_msg(report) + b"\0" * 2_000_000)
        await until(lambda: h.selectors[0].stats["device.messages"] == 2)
        await until(lambda: len(h.selectors[0].stats) > 3)
        assert h.selectors[0].stats["message.rejected:ValidationError"] == 1
        assert h.selectors[0].stats["message.rejected:message_too_large"] == 1
        assert await drain(h.log, KAFKA_EVALUATIONS) == []
        assert await drain(h.log, updates_topic("h0")) == []


async def test_selector_evaluation_reports_go_to_evaluations_keyed_by_model() -> None:
    async with running() as h:
        report = EvaluationReport("digits", 2, "d1", "h0", 50, 0.4, 0.9, NOW)
        await h.pubsub.publish(eval_topic("h0", "d1"), encode_msg(report))
        await until(lambda: h.selectors[0].stats["evaluation"] == 1)
        [record] = await drain(h.log, KAFKA_EVALUATIONS)
        assert record.key == b"digits" and decode(record.value, EvaluationReport) == report


async def test_selector_uploads_do_not_wait_behind_stalled_checkins() -> None:
    release = asyncio.Event()

    class SlowCheckins(MemoryLog):
        """Forwarding a check-in hangs until released (a slow Kafka partition, say)."""

        async def publish(self, topic: str, value: bytes, **kw: Any) -> Published:
            if topic == KAFKA_CHECKINS:
                await release.wait()
            return await super().publish(topic, value, **kw)

    config = dataclasses.replace(CONFIG, workers=1)
    async with running(config=config, plans=(plan(),), log_factory=SlowCheckins) as h:
        for d in range(3):
            await h.pubsub.publish(checkin_topic("h0", f"c{d}"), encode_msg(checkin("h0", f"c{d}")))
        chunks = update_chunks()
        headers = upload_headers(token(), "digits", 3, 2)
        for data in chunks:
            await h.pubsub.publish(upload_topic("h0", "d1"), data, headers=headers)
        await until(lambda: h.selectors[0].stats["update_chunk"] == len(chunks))
        assert h.selectors[0].stats["checkin"] == 0  # the check-ins are still stuck
        release.set()
        await until(lambda: h.selectors[0].stats["checkin"] == 3)
