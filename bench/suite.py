"""The bench suite's table: rows of a figure beside its reference, and what rows share.

A row is one measured figure and the reference it is compared with, measured
in the same run (``reference`` may be empty where no fair one exists: then the
note says why). Rows from benches written elsewhere (``bench.aggregate``,
``bench.selector``) are imported by module name when present: such a module
offers ``suite_rows(quick: bool) -> list[dict]`` with the keys of :class:`Row`;
a module without it, or absent, gives one "not available" row.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

NOT_AVAILABLE = "not available"


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    row: str  # what is measured, e.g. "rounds 300 dev bench_mlp_100k: round wall s"
    figure: str
    reference: str = ""
    note: str = ""


def render(rows: Iterable[Row]) -> str:
    """The table as aligned text (the only thing ``python -m bench`` prints to stdout)."""
    rows = list(rows)
    heads = ("row", "figure", "reference", "note")
    cells = [heads, *[(r.row, r.figure, r.reference, r.note) for r in rows]]
    widths = [max(len(c[i]) for c in cells[:]) if i < 3 else 0 for i in range(4)]
    lines = []
    for k, c in enumerate(cells):
        lines.append("  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3])
        if k == 0:
            lines.append("-" * (sum(widths[:3]) + 6 + 4))
    return "\n".join(line.rstrip() for line in lines)


def optional_rows(module: str, quick: bool) -> list[Row]:
    """Rows of another bench module by name, or one "not available" row saying why."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return [Row(module, NOT_AVAILABLE, note=f"module absent ({exc.name})")]
    fn = getattr(mod, "suite_rows", None)
    if fn is None:
        return [Row(module, NOT_AVAILABLE, note="module has no suite_rows(quick)")]
    try:
        got: list[dict[str, Any]] = fn(quick)
    except Exception as exc:  # another bench failing must not lose this table
        return [Row(module, "failed", note=f"{type(exc).__name__}: {exc}"[:160])]
    return [Row(**{k: str(v) for k, v in r.items() if k in Row.__dataclass_fields__}) for r in got]


def rss_of(pid: int) -> int:
    """Resident bytes of a process now (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class PeakRss:
    """Samples resident memory of named processes every ``every_s`` in a thread; keeps peaks."""

    pids: dict[str, int]
    every_s: float = 0.25
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks.get(name, 0), rss_of(pid))
            time.sleep(self.every_s)

    def mb(self, name: str) -> float:
        """Peak of ``name`` in MB."""
        return self.peaks.get(name, 0) / 1e6
