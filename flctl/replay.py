"""``flctl replay``: read a federation's Kafka topics back and print what happened.

Every fact of a round is on the service plane: the plans the coordinator
published, the admissions and rejections (audit), the hospitals' partials, the
model versions, the devices' evaluation reports. Replay reads them from the
start of the log (or from ``--since``), keeps what matches ``--model`` /
``--round``, and prints one line per fact in log-time order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flbus.port import LogBus, Record
from flproc.errors import SettingError
from flproc.settings import KAFKA_BOOTSTRAP, Subparsers, add_settings, explain, resolve
from schemas import (
    AuditEvent,
    EvaluationReport,
    ModelVersion,
    PartialAggregate,
    RoundPlan,
    decode,
    topics,
)
from schemas.chunking import ChunkedReceiver
from schemas.errors import SchemaError
from services.common.settings import HOSPITALS, KAFKA_AUTH, kafka_credentials

TOPICS = (
    topics.KAFKA_ROUND_PLANS,
    topics.KAFKA_AUDIT,
    topics.KAFKA_MODEL_VERSIONS,
    topics.KAFKA_EVALUATIONS,
)
"""Read besides each hospital's ``fl.v1.partials.{hospital}``."""
_SETTINGS = (KAFKA_BOOTSTRAP, HOSPITALS, *KAFKA_AUTH)


@dataclass(frozen=True)
class Fact:
    """One decoded record, ready to print."""

    at_ms: int
    topic: str
    model: str
    round_id: int
    text: str

    def line(self) -> str:
        """The fact as one human-readable line."""
        when = datetime.fromtimestamp(self.at_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
        rnd = f"r{self.round_id}" if self.round_id >= 0 else "-"
        return f"{when}  {self.topic:<20} {self.model:<14} {rnd:<5} {self.text}"

    def as_dict(self) -> dict[str, Any]:
        """The fact as a JSON object."""
        return {"at_ms": self.at_ms, "topic": self.topic, "model": self.model,
                "round": self.round_id, "text": self.text}  # fmt: skip


def describe(msg: Any) -> tuple[str, int, str] | None:
    """(model, round, text) of a decoded message, or None for messages replay skips."""
    if isinstance(msg, RoundPlan):
        targets = ",".join(f"{h}={t}" for h, t in zip(msg.hospitals, msg.targets, strict=True))
        why = f" ({msg.reason})" if msg.reason else ""
        return (
            msg.model,
            msg.round_id,
            (
                f"plan {msg.state}{why}: base v{msg.base_version}, goals {targets}, "
                f"p={msg.admission_probability:.3f}, lr {msg.learning_rate}, "
                f"{msg.local_epochs} epoch(s), batch {msg.batch_size}"
            ),
        )
    if isinstance(msg, AuditEvent):
        who = "/".join(x for x in (msg.hospital_id, msg.device_id) if x)
        detail = f" - {msg.detail}" if msg.detail else ""
        return msg.model, msg.round_id, f"{msg.kind} {who} {msg.reason}{detail}".strip()
    if isinstance(msg, PartialAggregate):
        return (
            msg.model,
            msg.round_id,
            (
                f"partial from {msg.hospital_id}: {msg.num_updates} updates, "
                f"{msg.num_examples} examples, {msg.rejected} rejected"
            ),
        )
    if isinstance(msg, ModelVersion):
        metrics = ", ".join(
            _metric(n, v) for n, v in zip(msg.metric_names, msg.metric_values, strict=True)
        )
        return (
            msg.model,
            msg.round_id,
            f"version v{msg.version} (from v{msg.parent_version}) {metrics}",
        )
    if isinstance(msg, EvaluationReport):
        return (
            msg.model,
            -1,
            (
                f"evaluation {msg.hospital_id}/{msg.device_id} v{msg.version}: "
                f"accuracy {msg.accuracy:.4f} on {msg.num_examples}"
            ),
        )
    return None


def _metric(name: str, value: float) -> str:
    """One metric of a version: counts (``test_examples``) as integers, scores to 4 places."""
    if name.endswith("examples") and value.is_integer():
        return f"{name} {int(value)}"  # the wire carries every metric as a float
    return f"{name} {value:.4f}"


class Replayer:
    """Turns records into facts (reassembling chunked messages), filtered."""

    def __init__(self, model: str | None = None, round_id: int | None = None) -> None:
        self.model, self.round_id = model, round_id
        self.receiver = ChunkedReceiver(timeout_ms=2**62)
        self.undecodable = 0

    def fact(self, record: Record) -> Fact | None:
        """The fact in ``record``, if it is whole, decodable and matches the filters."""
        try:
            if record.topic.startswith(topics.KAFKA_PARTIALS_PREFIX) or (
                record.topic == topics.KAFKA_MODEL_VERSIONS
            ):
                msg = self.receiver.add(record.value, record.timestamp_ms)
            else:
                msg = decode(record.value)
        except SchemaError:
            self.undecodable += 1
            return None
        described = describe(msg) if msg is not None else None
        if described is None:
            return None
        model, round_id, text = described
        if self.model is not None and model != self.model:
            return None
        if self.round_id is not None and round_id not in (self.round_id, -1):
            return None
        if self.round_id is not None and round_id == -1 and isinstance(msg, EvaluationReport):
            return None
        return Fact(record.timestamp_ms, record.topic.removeprefix("fl.v1."), model, round_id, text)


async def replay(
    bus: LogBus,
    model: str | None,
    round_id: int | None,
    since_ms: int | None = None,
    hospitals: Sequence[str] = ("h0", "h1", "h2"),
) -> tuple[list[Fact], int]:
    """Matching facts on the service plane, in log-time order, and the undecodable count."""
    names = [*TOPICS, *map(topics.partials_topic, hospitals)]
    sub = await bus.subscribe(names, start="earliest")
    try:
        if since_ms is not None:
            await sub.seek_to_time(since_ms)
        ends = {tp: end for tp, end in (await sub.end_offsets()).items()}
        positions = {tp: -1 for tp in ends}
        replayer = Replayer(model, round_id)
        facts: list[Fact] = []
        while any(positions[tp] + 1 < end for tp, end in ends.items()):
            record = await sub.get(5.0)
            if record is None:
                break
            positions[record.tp] = record.offset
            fact = replayer.fact(record)
            if fact is not None:
                facts.append(fact)
    finally:
        await sub.close()
    facts.sort(key=lambda f: f.at_ms)
    return facts, replayer.undecodable


def register(subparsers: Subparsers) -> None:
    """Add ``flctl replay``."""
    p = subparsers.add_parser(
        "replay",
        help="print a round's history from the Kafka topics (plans, admissions, partials, ...)",
        description="Read the service plane from the beginning and print, in log-time "
        "order, every plan, audit event (admissions, rejections with reasons, dropped "
        "devices, abandoned rounds), partial aggregate, model version and evaluation "
        "report, filtered by model and round.",
        epilog="Example: flctl replay --model digits_mlp --round 3",
    )
    add_settings(p, _SETTINGS)
    p.add_argument("--model", help="only this model")
    p.add_argument("--round", type=int, help="only this round (and its model's versions)")
    p.add_argument("--since", help="start at this UTC time, e.g. 2026-11-28T05:00:00")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=main)


def print_facts(facts: Iterable[Fact], as_json: bool, out: Any = sys.stdout) -> None:
    """Write the facts, as text lines or JSON lines."""
    for fact in facts:
        print(json.dumps(fact.as_dict()) if as_json else fact.line(), file=out)


def main(args: argparse.Namespace) -> int:
    """Replay and print; exit 1 when Kafka cannot be reached, 2 on a bad --since."""
    from flbus.errors import BusError
    from flbus.kafka import KafkaBus
    from flproc.logs import configure_logging

    configure_logging("console", "warning")
    try:
        values = resolve(args, _SETTINGS)
        credentials = kafka_credentials(values)
    except SettingError as e:
        print(f"flctl replay: {explain(e, _SETTINGS)}", file=sys.stderr)
        return 2
    since_ms = None
    if args.since:
        try:
            since_ms = int(
                datetime.fromisoformat(args.since).replace(tzinfo=UTC).timestamp() * 1000
            )
        except ValueError as e:
            print(f"flctl replay: --since {args.since!r}: {e}", file=sys.stderr)
            return 2

    async def run() -> tuple[list[Fact], int]:
        async with KafkaBus(
            values["kafka_bootstrap"], client_id="flctl-replay", credentials=credentials
        ) as bus:
            return await replay(bus, args.model, args.round, since_ms, values["hospitals"])

    try:
        facts, undecodable = asyncio.run(run())
    except BusError as e:
        print(f"flctl replay: {e}", file=sys.stderr)
        return 1
    print_facts(facts, args.json)
    if undecodable:
        print(f"({undecodable} records could not be decoded)", file=sys.stderr)
    if not facts:
        print("no matching records", file=sys.stderr)
    return 0
