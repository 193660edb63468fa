"""``flctl dlq``: list and purge the dead letters on ``fl.v1.dead-letters``.

A service consumer that meets a record it cannot use (not decodable, a message
type its topic does not carry, or one its handler raised on) skips it and
writes a ``DeadLetter`` there: where the record was, which role skipped it, why,
and the first bytes of it. ``list`` prints them; ``purge`` deletes them from
Kafka (DeleteRecords up to the end offsets it saw, through the admin client),
so letters written while it runs are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flbus.port import LogBus, TopicPartition
from flproc.errors import SettingError
from flproc.settings import KAFKA_BOOTSTRAP, Subparsers, add_settings, explain, resolve
from schemas import DeadLetter, decode
from schemas.errors import SchemaError
from schemas.topics import KAFKA_DEAD_LETTERS
from services.common.settings import KAFKA_AUTH, kafka_credentials

if TYPE_CHECKING:
    from flbus.kafka import KafkaBus

IDLE_S = 2.0  # a read that brings nothing for this long is at the end (e.g. after a purge)


@dataclass(frozen=True)
class Found:
    """The dead letters on the topic, oldest first, and where the topic ended when read."""

    letters: list[DeadLetter]
    unreadable: int
    ends: dict[TopicPartition, int]


async def read_dead_letters(bus: LogBus, origin_topic: str | None = None) -> Found:
    """Every dead letter on ``fl.v1.dead-letters`` now (of ``origin_topic`` if given)."""
    sub = await bus.subscribe([KAFKA_DEAD_LETTERS], start="earliest")
    letters: list[DeadLetter] = []
    unreadable = 0
    try:
        ends = await sub.end_offsets()
        at = {tp: -1 for tp in ends}
        while any(at[tp] + 1 < end for tp, end in ends.items()):
            record = await sub.get(IDLE_S)
            if record is None:
                break  # records below the log start were deleted (purged or retention)
            at[record.tp] = record.offset
            try:
                letter = decode(record.value, DeadLetter)
            except SchemaError:
                unreadable += 1
                continue
            if origin_topic is None or letter.origin_topic == origin_topic:
                letters.append(letter)
    finally:
        await sub.close()
    return Found(letters, unreadable, ends)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def line(letter: DeadLetter) -> str:
    """One dead letter as a line: time, origin, role, reason, size, detail."""
    who = f"{letter.role}/{letter.hospital_id}" if letter.hospital_id else letter.role
    origin = f"{letter.origin_topic}:{letter.origin_partition}@{letter.origin_offset}"
    return (
        f"{_when(letter.at_ms)}  {origin}  {who}  {letter.reason}  "
        f"{letter.original_size} B  {letter.detail}"
    )


def as_dict(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter as a JSON object (the original bytes as hex)."""
    return {
        "at_ms": letter.at_ms,
        "topic": letter.origin_topic,
        "partition": letter.origin_partition,
        "offset": letter.origin_offset,
        "key": bytes(letter.origin_key).decode("utf-8", "replace"),
        "timestamp_ms": letter.origin_timestamp_ms,
        "role": letter.role,
        "hospital": letter.hospital_id,
        "reason": letter.reason,
        "detail": letter.detail,
        "size": letter.original_size,
        "original_hex": bytes(letter.original).hex(),
    }


async def purge(bus: KafkaBus) -> int:
    """Delete every dead letter up to the end offsets seen now; return how many there were."""
    found = await read_dead_letters(bus)
    await bus.delete_records(found.ends)
    return len(found.letters) + found.unreadable


def register(subparsers: Subparsers) -> None:
    """Add ``flctl dlq list`` and ``flctl dlq purge``."""
    p = subparsers.add_parser(
        "dlq",
        help="list or purge dead letters: Kafka records the services skipped as unusable",
        description="A service that reads a Kafka record it cannot use (undecodable, a "
        "message type its topic does not carry, or one its handler failed on) skips it, "
        "counts it, logs record.dead_lettered and writes a DeadLetter to "
        f"{KAFKA_DEAD_LETTERS}: origin topic, partition, offset, key, role, hospital, "
        "reason, detail and up to 16 KiB of the original bytes.",
    )
    sub = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    ls = sub.add_parser(
        "list",
        help="print dead letters, oldest first",
        description="Print the dead letters on the topic, oldest first: time written, "
        "origin topic:partition@offset, role(/hospital), reason, original size, detail.",
        epilog="Example: flctl dlq list --topic fl.v1.round-plans --limit 20",
    )
    add_settings(ls, _SETTINGS)
    ls.add_argument("--topic", help="only dead letters of records from this origin topic")
    ls.add_argument(
        "--limit", type=int, default=100, help="print at most the N newest (default 100)"
    )
    ls.add_argument("--json", action="store_true", help="one JSON object per line, with bytes")
    ls.set_defaults(handler=main_list)
    pg = sub.add_parser(
        "purge",
        help="delete every dead letter now on the topic",
        description=f"Delete the records of {KAFKA_DEAD_LETTERS} up to its current end "
        "offsets (Kafka DeleteRecords through the admin client); dead letters written "
        "meanwhile are kept. The records the letters point to are not touched.",
    )
    add_settings(pg, _SETTINGS)
    pg.set_defaults(handler=main_purge)


_SETTINGS = (KAFKA_BOOTSTRAP, *KAFKA_AUTH)


def _bus(args: argparse.Namespace, action: str) -> KafkaBus | None:
    """The Kafka bus the settings name (not started), None after reporting a bad setting."""
    from flbus.kafka import KafkaBus

    try:
        values = resolve(args, _SETTINGS)
        credentials = kafka_credentials(values)
    except SettingError as e:
        print(f"flctl dlq {action}: {explain(e, _SETTINGS)}", file=sys.stderr)
        return None
    return KafkaBus(values["kafka_bootstrap"], client_id="flctl-dlq", credentials=credentials)


def main_list(args: argparse.Namespace) -> int:
    """Print dead letters; exit 1 when Kafka cannot be reached, 2 on a bad setting."""
    from flbus.errors import BusError
    from flproc.logs import configure_logging

    configure_logging("console", "warning")
    found_bus = _bus(args, "list")
    if found_bus is None:
        return 2
    if args.limit < 1:
        print("flctl dlq list: --limit must be at least 1", file=sys.stderr)
        return 2

    async def run() -> Found:
        async with found_bus as bus:
            return await read_dead_letters(bus, args.topic)

    try:
        found = asyncio.run(run())
    except BusError as e:
        print(f"flctl dlq list: {e}", file=sys.stderr)
        return 1
    for letter in found.letters[-args.limit :]:
        print(json.dumps(as_dict(letter)) if args.json else line(letter))
    if found.unreadable:
        print(f"({found.unreadable} records could not be decoded)", file=sys.stderr)
    shown = min(len(found.letters), args.limit)
    print(f"{shown} of {len(found.letters)} dead letters", file=sys.stderr)
    return 0


def main_purge(args: argparse.Namespace) -> int:
    """Delete the dead letters; exit 1 when Kafka cannot be reached, 2 on a bad setting."""
    from flbus.errors import BusError
    from flproc.logs import configure_logging

    configure_logging("console", "warning")
    found_bus = _bus(args, "purge")
    if found_bus is None:
        return 2

    async def run() -> int:
        async with found_bus as bus:
            return await purge(bus)

    try:
        removed = asyncio.run(run())
    except BusError as e:
        print(f"flctl dlq purge: {e}", file=sys.stderr)
        return 1
    print(f"purged {removed} dead letters from {KAFKA_DEAD_LETTERS}")
    return 0
