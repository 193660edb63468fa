"""The device's record of rounds it took part in, so it never uploads twice for one round.

It also keeps the newest control message of each kind (plan, version) the
device adopted per model, so a replayed older one stays refused after a
restart (``device_sdk.trust``).

A round is claimed (one sqlite row, committed) *before* anything is published for
it: after a crash mid-upload the round is lost rather than sent twice, which is
what the aggregator's one-update-per-device rule wants anyway.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from device_sdk.errors import StoreError
from device_sdk.store import durable_but_fast

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    model     TEXT    NOT NULL,
    round_id  INTEGER NOT NULL,
    outcome   TEXT    NOT NULL,
    update_id TEXT    NOT NULL,
    at_ms     INTEGER NOT NULL,
    PRIMARY KEY (model, round_id)
);
CREATE TABLE IF NOT EXISTS adopted (
    model TEXT    NOT NULL,
    kind  TEXT    NOT NULL,
    major INTEGER NOT NULL,
    minor INTEGER NOT NULL,
    PRIMARY KEY (model, kind)
);
"""


@dataclass(frozen=True)
class RoundEntry:
    """How the device's part in one round ended."""

    model: str
    round_id: int
    outcome: str  # "uploaded", "failed", "dropped", "late"
    update_id: str
    at_ms: int


class RoundLedger:
    """Rounds already taken part in, per model, persisted in one sqlite file."""

    def __init__(self, path: Path | str) -> None:
        try:
            # Claims are written from a worker thread; the lock serialises access.
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._lock = threading.Lock()
            durable_but_fast(self._conn)
            self._conn.executescript(_SCHEMA)
            rows = self._conn.execute("SELECT model, round_id FROM rounds").fetchall()
            marks = self._conn.execute("SELECT model, kind, major, minor FROM adopted").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open round ledger {path}: {exc}") from exc
        # Asked on every check-in tick; only this ledger writes the table.
        self._taken: set[tuple[str, int]] = {(m, r) for m, r in rows}
        self._adopted: dict[tuple[str, str], tuple[int, int]] = {
            (m, k): (a, b) for m, k, a, b in marks
        }

    def highest(self, model: str, kind: str) -> tuple[int, int] | None:
        """Position of the newest ``kind`` message adopted for ``model`` (None: none yet)."""
        return self._adopted.get((model, kind))

    def adopted(self, model: str, kind: str, position: tuple[int, int]) -> None:
        """Remember that a ``kind`` message at ``position`` was adopted (if it is newer)."""
        known = self._adopted.get((model, kind))
        if known is not None and position <= known:
            return
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR REPLACE INTO adopted (model, kind, major, minor)"
                    " VALUES (?, ?, ?, ?)",
                    (model, kind, *position),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"round ledger failed: {exc}") from exc
        self._adopted[(model, kind)] = position

    def has(self, model: str, round_id: int) -> bool:
        """Whether the device already took part in (or gave up) this round."""
        return (model, round_id) in self._taken

    def claim(self, model: str, round_id: int, outcome: str, update_id: str, at_ms: int) -> bool:
        """Record the round once; False if it was already recorded (then publish nothing)."""
        try:
            with self._lock:
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO rounds (model, round_id, outcome, update_id, at_ms)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (model, round_id, outcome, update_id, at_ms),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"round ledger failed: {exc}") from exc
        self._taken.add((model, round_id))
        return cur.rowcount == 1

    def get(self, model: str, round_id: int) -> RoundEntry | None:
        """The recorded outcome of a round, or None if the device has not taken part."""
        with self._lock:
            row = self._conn.execute(
                "SELECT outcome, update_id, at_ms FROM rounds WHERE model = ? AND round_id = ?",
                (model, round_id),
            ).fetchone()
        return None if row is None else RoundEntry(model, round_id, row[0], row[1], row[2])

    def entries(self) -> list[RoundEntry]:
        """Every recorded round, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT model, round_id, outcome, update_id, at_ms FROM rounds"
                " ORDER BY at_ms, rowid"
            ).fetchall()
        return [RoundEntry(*row) for row in rows]

    def close(self) -> None:
        """Close the database; the record stays on disk."""
        with self._lock:
            self._conn.close()
