"""Idle ONNX Runtime training sessions kept for the next round instead of built again.

Building a session (checkpoint, training and eval graphs, optimizer) costs
milliseconds to tens of milliseconds; loading a round's weights into one costs
microseconds. A :class:`SessionPool` lends a session for one run and takes it
back, keyed by what the session was built from: the artifacts' content digest
(devices of one process that installed the same bundle in their own folders
share it), the optimizer and the thread count.

Bounded: at most one idle session per key, at most ``max_idle`` keys, and a
session built from a new artifacts version of a model evicts the idle ones of
its older versions. A session that saw an error is dropped, not returned.

Only optimizers without state between steps are pooled (:data:`STATELESS`):
ORT 1.19 keeps AdamW's moments in the CheckpointState, and neither a new
``Optimizer`` nor anything in its Python API resets them, so a round with
AdamW still gets a fresh session: each round starts from fresh optimizer state.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

S = TypeVar("S")

STATELESS = frozenset({"sgd", None})  # None: an evaluation-only session (no optimizer)


@dataclass(frozen=True, slots=True)
class SessionKey:
    """What a session was built from; equal keys give interchangeable sessions."""

    model: str
    digest: str  # content of the artifacts (see ArtifactInfo.sha256)
    optimizer: str | None
    threads: int | None


class SessionPool(Generic[S]):
    """Idle sessions by key, lent one run at a time (thread-safe)."""

    def __init__(self, max_idle: int = 4) -> None:
        """Keep at most ``max_idle`` idle sessions (one per key), least recently used out first."""
        if max_idle < 0:
            raise ValueError(f"max_idle must be >= 0, got {max_idle}")
        self._max_idle = max_idle
        self._idle: OrderedDict[SessionKey, S] = OrderedDict()
        self._lock = threading.Lock()
        self.built = 0  # sessions built by this pool (a figure for benchmarks and tests)

    def __len__(self) -> int:
        return len(self._idle)

    @contextlib.contextmanager
    def borrow(self, key: SessionKey, build: Callable[[], S]) -> Iterator[S]:
        """An idle session of ``key`` (or a new one); returned after the block unless it raised."""
        with self._lock:
            session = self._idle.pop(key, None)
        if session is None:
            session = build()
            with self._lock:
                self.built += 1
        yield session  # an exception here drops the session: its state is unknown
        if key.optimizer in STATELESS:
            self._give_back(key, session)

    def _give_back(self, key: SessionKey, session: S) -> None:
        with self._lock:
            for old in [k for k in self._idle if k.model == key.model and k.digest != key.digest]:
                del self._idle[old]  # a newer artifacts version of this model is in use
            self._idle[key] = session  # one idle per key: a second one replaces the first
            self._idle.move_to_end(key)
            while len(self._idle) > self._max_idle:
                self._idle.popitem(last=False)

    def clear(self) -> None:
        """Drop every idle session."""
        with self._lock:
            self._idle.clear()


_shared: SessionPool[Any] | None = None
_shared_lock = threading.Lock()


def shared_pool() -> SessionPool[Any]:
    """The process's pool, made on first use: devices simulated in one process share it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SessionPool()
        return _shared
