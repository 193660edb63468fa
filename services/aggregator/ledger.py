"""Which update offsets may be committed: never past a record an unpublished round needs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flbus.port import Record, TopicPartition


class OffsetLedger:
    """Tracks how far each partition was read and what was last committed."""

    def __init__(self) -> None:
        self._read: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def read(self, record: Record) -> None:
        """Note that ``record`` was handled (accepted, rejected or parked in a round)."""
        self._read[record.tp] = max(record.offset + 1, self._read.get(record.tp, 0))

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to handle on each partition read so far."""
        return dict(self._read)

    def to_commit(
        self, floors: Iterable[Mapping[TopicPartition, int]]
    ) -> dict[TopicPartition, int]:
        """Offsets to commit now: read positions, held back to the lowest floor, if they moved."""
        target = dict(self._read)
        for held in floors:
            for tp, offset in held.items():
                target[tp] = min(offset, target.get(tp, offset))
        return {tp: o for tp, o in target.items() if o > self._committed.get(tp, -1)}

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record a successful commit."""
        self._committed.update(offsets)

    def seed(self, tp: TopicPartition, offset: int | None) -> None:
        """Start from the group's committed offset of ``tp`` (None: nothing committed)."""
        if offset is not None:
            self._committed[tp] = max(offset, self._committed.get(tp, -1))
