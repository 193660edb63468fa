"""The parts of ``bench.floods``: role processes, their memory, and what Kafka shows.

Every role is ``python -m flctl.main <role>`` with ``FL_*`` settings (its log in
a file); :class:`Memory` samples each role's ``VmRSS`` every ~100 ms in a thread
and reads ``VmHWM`` so a spike between samples is not missed; :class:`Watch`
reads ``fl.v1.audit``, ``fl.v1.round-plans`` and ``fl.v1.model-versions`` from
the start, in the background, so a flood's outcome is what a user would see
on the service plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flbus.kafka import KafkaBus
from schemas import AuditEvent, Chunk, ModelVersion, RoundPlan, decode, topics
from schemas.chunking import ChunkedReceiver
from schemas.errors import SchemaError

REPO = Path(__file__).resolve().parents[1]
MB = 2**20


def wall_ms() -> int:
    """Now, in ms since the epoch (the clock of Kafka record timestamps)."""
    return time.time_ns() // 1_000_000


@dataclass
class Role:
    """One role process, its output in ``log``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Role:
        """Start the process."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flctl.main", *self.argv],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, SIGKILL after ``grace`` seconds; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def tail(self, lines: int = 10) -> str:
        """The last lines of the log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def status_kb(pid: int, field_name: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM), None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Window:
    """Peak RSS (kB) per role over one flood, from samples and the high-water mark."""

    hwm_before: dict[str, int]
    peak: dict[str, int] = field(default_factory=dict)

    def result(self, pids: dict[str, int]) -> dict[str, float]:
        """Peak MB per role: the highest sample, or the high-water mark if it rose meanwhile."""
        out: dict[str, float] = {}
        for name, pid in pids.items():
            peak = self.peak.get(name, 0)
            hwm = status_kb(pid, "VmHWM") or 0
            if hwm > self.hwm_before.get(name, 0):
                peak = max(peak, hwm)  # a spike between two samples
            out[name] = peak / 1024
        return out


class Memory:
    """Sample each role's RSS every ``interval`` seconds in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.1) -> None:
        self.pids, self.interval = pids, interval
        self.window: Window | None = None
        self.samples: dict[str, list[int]] = {n: [] for n in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            window = self.window
            for name, pid in self.pids.items():
                rss = status_kb(pid, "VmRSS")
                if rss is None:
                    continue
                self.samples[name].append(rss)
                if window is not None:
                    window.peak[name] = max(window.peak.get(name, 0), rss)

    def idle(self, seconds: float) -> dict[str, float]:
        """Median RSS (MB) of each role over the next ``seconds`` (a blocking wait)."""
        start = {n: len(s) for n, s in self.samples.items()}
        time.sleep(seconds)
        out: dict[str, float] = {}
        for name, samples in self.samples.items():
            taken = sorted(samples[start[name] :]) or [0]
            out[name] = taken[len(taken) // 2] / 1024
        return out

    def begin(self) -> None:
        """Start a flood's window."""
        self.window = Window({n: status_kb(p, "VmHWM") or 0 for n, p in self.pids.items()})

    def end(self) -> dict[str, float]:
        """End the window: the peak MB of each role in it."""
        assert self.window is not None
        window, self.window = self.window, None
        return window.result(self.pids)


@dataclass(frozen=True)
class Seen:
    """One decoded service-plane message and when Kafka got it."""

    at_ms: int
    msg: Any


class Watch:
    """Audit events, plans and model versions, read from the start in the background."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.seen: list[Seen] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        names = [topics.KAFKA_AUDIT, topics.KAFKA_ROUND_PLANS, topics.KAFKA_MODEL_VERSIONS]
        receiver = ChunkedReceiver(timeout_ms=2**62)
        async with KafkaBus(self.bootstrap, client_id="floods-watch") as bus:
            sub = await bus.subscribe(names, start="earliest")
            while True:
                record = await sub.get(1.0)
                if record is None:
                    continue
                msg: Any
                try:
                    msg = decode(record.value)
                    if isinstance(msg, Chunk):
                        msg = receiver.add(record.value, record.timestamp_ms)
                except SchemaError:
                    continue
                if msg is not None:
                    self.seen.append(Seen(record.timestamp_ms, msg))

    def audits(self, after_ms: int = 0) -> list[AuditEvent]:
        """Audit events Kafka got from ``after_ms`` on."""
        return [s.msg for s in self.seen if isinstance(s.msg, AuditEvent) and s.at_ms >= after_ms]

    def plans(self, model: str) -> list[RoundPlan]:
        """Every plan state of ``model`` published, in order."""
        return [s.msg for s in self.seen if isinstance(s.msg, RoundPlan) and s.msg.model == model]

    def versions_after(self, model: str, after_ms: int) -> list[int]:
        """Versions (> 0) of ``model`` announced from ``after_ms`` on."""
        return [
            s.msg.version
            for s in self.seen
            if isinstance(s.msg, ModelVersion)
            and s.msg.model == model
            and s.msg.version > 0
            and s.at_ms >= after_ms
        ]

    async def wait_version(self, model: str, after_ms: int, timeout: float) -> float | None:
        """Seconds until a version of ``model`` is announced after ``after_ms`` (None: none)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.versions_after(model, after_ms):
                return (wall_ms() - after_ms) / 1000
            await asyncio.sleep(0.2)
        return None


def role_env(base: dict[str, str]) -> dict[str, str]:
    """This process's environment without its ``FL_*`` settings, plus ``base``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FL_")}
    return {**env, "PYTHONPATH": str(REPO), **base}
