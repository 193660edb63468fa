"""Local example store (sqlite3): predictions now, labels months later, then training.

An example is keyed by (example_id, model): the features a model saw and what it
predicted. A label is a fact about the example, so ``attach_label`` labels it for
every model. Unlabelled examples never train. Examples expire ``retention`` after
their prediction (default 90 days); all times are passed in, timezone-aware.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from device_sdk.errors import FeatureError, StoreError, UnknownModelError

log = structlog.get_logger(__name__)
DEFAULT_RETENTION = timedelta(days=90)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS examples (
    example_id   TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    features     BLOB    NOT NULL,
    width        INTEGER NOT NULL,
    prediction   INTEGER NOT NULL,
    predicted_at REAL    NOT NULL,
    label        INTEGER,
    labelled_at  REAL,
    PRIMARY KEY (example_id, model)
);
CREATE INDEX IF NOT EXISTS examples_by_model ON examples (model, predicted_at);
"""


@dataclass(frozen=True)
class StoreCounts:
    """How many live examples a model has, labelled and waiting for a label."""

    labelled: int
    unlabelled: int


def _ts(at: datetime) -> float:
    if at.tzinfo is None or at.utcoffset() is None:
        raise StoreError(f"datetime {at!r} is naive; pass a timezone-aware datetime")
    return at.timestamp()


def durable_but_fast(conn: sqlite3.Connection) -> None:
    """WAL journal with NORMAL sync: a commit survives an app crash without an fsync.

    Full sync costs one fsync per commit (tens of ms on slow flash), and the app
    writes one row per prediction. What WAL+NORMAL can lose is the last commits
    before a power cut: a few predictions, or the ledger's claim of a round, in
    which case the aggregator's one-update-per-device rule still refuses a
    second upload. This is also Android's default for SQLite.
    """
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")


class ExampleStore:
    """Predictions and late labels per model, persisted in one sqlite file."""

    def __init__(
        self,
        path: Path | str,
        feature_widths: Mapping[str, int],
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError("retention must be positive")
        self._widths = dict(feature_widths)
        self._retention = retention
        try:
            # Rounds read the store from a worker thread; the lock serialises access.
            self._conn = sqlite3.connect(str(path), check_same_thread=False)
            self._lock = threading.Lock()
            durable_but_fast(self._conn)
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open example store {path}: {exc}") from exc

    def close(self) -> None:
        """Close the database; the data stays on disk."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ExampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._lock, self._conn:
                yield self._conn
        except sqlite3.Error as exc:
            raise StoreError(f"example store failed: {exc}") from exc

    def _width(self, model: str) -> int:
        try:
            return self._widths[model]
        except KeyError:
            raise UnknownModelError(f"store has no feature width for model {model!r}") from None

    def _cutoff(self, now: datetime) -> float:
        return _ts(now - self._retention)

    def record_prediction(
        self,
        example_id: str,
        features: NDArray[Any],
        prediction: int,
        at: datetime,
        *,
        model: str,
    ) -> None:
        """Keep the features ``model`` saw and its prediction; a later call replaces both."""
        width = self._width(model)
        vec = np.asarray(features, dtype=np.float32)
        if vec.shape != (width,):
            raise FeatureError(f"{model} features must have shape ({width},), got {vec.shape}")
        if not np.all(np.isfinite(vec)):
            raise FeatureError(f"{model} features of {example_id!r} contain NaN or inf")
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO examples (example_id, model, features, width, prediction,"
                " predicted_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (example_id, model)"
                " DO UPDATE SET features = excluded.features, width = excluded.width,"
                " prediction = excluded.prediction, predicted_at = excluded.predicted_at",
                (example_id, model, vec.tobytes(), width, int(prediction), _ts(at)),
            )

    def attach_label(self, example_id: str, label: int, at: datetime) -> int:
        """Label every live record of ``example_id``; returns how many were labelled."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE examples SET label = ?, labelled_at = ?"
                " WHERE example_id = ? AND predicted_at >= ?",
                (int(label), _ts(at), example_id, self._cutoff(at)),
            )
        if cur.rowcount == 0:
            log.info("store.label_unmatched", example_id=example_id)
        return cur.rowcount

    def labelled(self, model: str, now: datetime) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Features (n, width) and labels (n,) of the live labelled examples of ``model``."""
        width = self._width(model)
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT features, label FROM examples WHERE model = ? AND label IS NOT NULL"
                " AND predicted_at >= ? AND width = ? ORDER BY predicted_at, example_id",
                (model, self._cutoff(now), width),
            ).fetchall()
        x = np.zeros((len(rows), width), dtype=np.float32)
        for i, (blob, _) in enumerate(rows):
            x[i] = np.frombuffer(blob, dtype=np.float32)
        return x, np.array([label for _, label in rows], dtype=np.int64)

    def counts(self, model: str, now: datetime) -> StoreCounts:
        """Live labelled and unlabelled examples of ``model``."""
        with self._tx() as conn:
            labelled, total = conn.execute(
                "SELECT COUNT(label), COUNT(*) FROM examples WHERE model = ? AND predicted_at >= ?",
                (model, self._cutoff(now)),
            ).fetchone()
        return StoreCounts(labelled=labelled, unlabelled=total - labelled)

    def purge(self, now: datetime) -> int:
        """Delete examples older than the retention; returns how many were deleted."""
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM examples WHERE predicted_at < ?", (self._cutoff(now),))
        if cur.rowcount:
            log.info("store.purged", deleted=cur.rowcount)
        return cur.rowcount
