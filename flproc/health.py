"""A service process's run: signals, liveness for containers, exit codes.

A role touches a file while it makes progress; compose.yaml's healthcheck
calls a role unhealthy when the file is older than 30 s. The heartbeat runs on
the role's own event loop, so a blocked or dead loop stops it; before each
touch it asks the role's :class:`Liveness` probes (broker link up, work that
waits is being done: see :class:`Progress`), so a role whose loop still runs
but whose subscription stalled goes stale too. A timer alone proves nothing.

Stopping: SIGTERM or SIGINT sets the role's ``stop`` event; a role that has not
returned ``stop_grace_s`` later is cancelled, and a process still running after
another ``stop_grace_s`` exits anyway. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import structlog

from flproc.redaction import redact

K = TypeVar("K")

HEALTH_FILE = Path(os.environ.get("FL_HEALTH_FILE", "/tmp/fl-healthy"))


Probe = Callable[[], "str | None"]
"""A health question: None when fine, else what is wrong (logged, and the file goes stale)."""


class Liveness:
    """The probes the heartbeat asks before it touches the health file."""

    def __init__(self) -> None:
        self._probes: list[Probe] = []

    def add(self, probe: Probe) -> None:
        """Ask ``probe`` before every touch from now on."""
        self._probes.append(probe)

    def problem(self) -> str | None:
        """The first probe's complaint, or None when every probe is content."""
        for probe in self._probes:
            found = probe()
            if found is not None:
                return found
        return None


class Progress:
    """Work taken in versus work done: stalled when work waits and none was done for a while.

    An idle role is healthy; a role with work waiting must finish some of it at
    least every ``stall_s`` seconds. ``clock`` is in seconds (monotonic).
    """

    def __init__(self, what: str, stall_s: float, clock: Callable[[], float] = time.monotonic):
        self.what, self.stall_s, self.clock = what, stall_s, clock
        self.taken = self.done_count = 0
        self._last = clock()

    def took(self) -> None:
        """One unit of work arrived."""
        if self.taken == self.done_count:
            self._last = self.clock()  # idle until now: the stall clock starts here
        self.taken += 1

    def waiting(self, count: int) -> None:
        """``count`` units wait now, as measured (e.g. a consumer's lag), not as counted."""
        if count > 0 and self.taken == self.done_count:
            self._last = self.clock()  # idle until now: the stall clock starts here
        self.taken = self.done_count + max(count, 0)

    def done(self) -> None:
        """One unit of work was finished (handled, rejected or failed: it left)."""
        self.done_count += 1
        self._last = self.clock()

    def problem(self) -> str | None:
        """A :data:`Probe`: complains when work waits and nothing was done for ``stall_s``."""
        waiting = self.taken - self.done_count
        idle_for = self.clock() - self._last
        if waiting > 0 and idle_for > self.stall_s:
            return f"{self.what}: {waiting} waiting, none done for {idle_for:.0f}s"
        return None


class ConsumerLag:
    """A log consumer's health: records wait (end offsets ahead of what it handled) and
    none was handled for ``stall_s``, or the broker leaves its end offsets unanswered.

    The role calls :meth:`handled` per record; :meth:`watch` measures the lag
    every ``every_s`` seconds. A partition whose position is not known yet
    (nothing read or started there) does not count. ``clock``: seconds, monotonic.
    """

    def __init__(
        self,
        what: str,
        stall_s: float,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 5.0,
    ):
        self.progress = Progress(what, stall_s, clock)
        self.every_s = every_s
        self.unanswered: str | None = None

    def handled(self) -> None:
        """One record was handled (used, rejected or dead-lettered)."""
        self.progress.done()

    def measured(self, ends: Mapping[K, int], positions: Mapping[K, int]) -> int:
        """Note the end offsets against the positions handled; the records waiting."""
        self.unanswered = None
        waiting = sum(max(0, end - positions[k]) for k, end in ends.items() if k in positions)
        self.progress.waiting(waiting)
        return waiting

    def problem(self) -> str | None:
        """A :data:`Probe`: the broker unanswered, or records waiting and none handled."""
        return self.unanswered or self.progress.problem()

    async def watch(
        self,
        measure: Callable[[], Awaitable[tuple[Mapping[K, int], Mapping[K, int]]]],
        stop: asyncio.Event,
    ) -> None:
        """Every ``every_s`` s until ``stop``, note ``measure()``'s (end offsets, positions);
        a broker that fails or takes longer than ``every_s`` to answer makes it unhealthy."""
        every_s = self.every_s
        while not stop.is_set():
            try:
                self.measured(*await asyncio.wait_for(measure(), every_s))
            except TimeoutError:
                self.unanswered = f"{self.progress.what}: end offsets unanswered for {every_s:g}s"
            except Exception as exc:  # any broker failure: unhealthy, not dead
                self.unanswered = f"{self.progress.what}: end offsets failed: {exc!r}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)


async def heartbeat(
    stop: asyncio.Event,
    path: Path = HEALTH_FILE,
    every_s: float = 5.0,
    liveness: Liveness | None = None,
) -> None:
    """Touch ``path`` every ``every_s`` s while ``liveness`` is content, until ``stop`` is set."""
    log = structlog.get_logger("health")
    said: str | None = None
    while not stop.is_set():
        problem = liveness.problem() if liveness is not None else None
        if problem is None:
            with contextlib.suppress(OSError):
                path.touch()
            if said is not None:
                log.info("health.recovered", was=said)
        elif problem != said:
            log.error("health.unhealthy", problem=problem)
        said = problem
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


@contextlib.asynccontextmanager
async def beating(  # type: ignore[no-untyped-def]
    stop: asyncio.Event, path: Path = HEALTH_FILE, liveness: Liveness | None = None
):
    """Run :func:`heartbeat` for the duration of the block."""
    task = asyncio.create_task(heartbeat(stop, path, liveness=liveness))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


EXIT_CLEAN = 0
EXIT_BUS_FAILED = 1
# EXIT_BAD_SETTING = 2 lives with the settings (flproc.settings), which report it.


def failure_among(
    exc: BaseException, kinds: tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first exception of one of ``kinds`` in ``exc``, looking inside exception groups."""
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = failure_among(inner, kinds)
            if found is not None:
                return found
    return None


def run_service(
    name: str,
    serve: Callable[[asyncio.Event], Awaitable[None]],
    bus_errors: tuple[type[BaseException], ...],
    *,
    prog: str | None = None,
    liveness: Liveness | None = None,
    stop_grace_s: float = 3.0,
) -> int:
    """Run ``serve(stop)`` until SIGINT/SIGTERM sets ``stop``, with the heartbeat beating.

    ``liveness`` holds the role's health probes (the role may add them later,
    once it is built); ``serve`` gets ``stop_grace_s`` to return after ``stop``
    before it is cancelled, and as long again before the process exits anyway.

    Returns the process exit code:

    - 0 (:data:`EXIT_CLEAN`) after a clean stop;
    - 1 (:data:`EXIT_BUS_FAILED`) when ``serve`` raised one of ``bus_errors``
      (the command passes its bus layer's base error, e.g. ``flbus.errors.BusError``),
      also from inside an exception group: one line ``<prog>: <reason>`` on
      stderr and a ``<name>.bus_failed`` log line, no traceback;
    - 2 (``flproc.settings.EXIT_BAD_SETTING``) is the command's answer to a bad
      setting, before anything runs (``flproc.settings.refuse``).

    Any other exception propagates: it is a bug, and its traceback is wanted.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():  # a second signal: the operator means it
                os._exit(EXIT_BUS_FAILED)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        async with beating(stop, liveness=liveness):
            await _serve_until_stopped(name, serve(stop), stop, stop_grace_s)

    try:
        asyncio.run(main())
    except BaseException as exc:
        failed = failure_among(exc, bus_errors)
        if failed is None:
            raise
        reason = redact(str(failed))
        print(f"{prog or name}: {reason}", file=sys.stderr, flush=True)
        structlog.get_logger(name).error(f"{name}.bus_failed", error=reason)
        return EXIT_BUS_FAILED
    return EXIT_CLEAN


async def _serve_until_stopped(
    name: str, serving: Awaitable[None], stop: asyncio.Event, grace_s: float
) -> None:
    """Await ``serving``; once ``stop`` is set, bound how long it may take to finish."""
    task = asyncio.ensure_future(serving)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace_s)
        if not task.done():
            structlog.get_logger(name).warning(f"{name}.stop_forced", grace_s=grace_s)
            task.cancel()
            await asyncio.wait({task}, timeout=grace_s)
        if not task.done():
            structlog.get_logger(name).error(f"{name}.stop_stuck", grace_s=grace_s)
            print(f"{name}: still busy {2 * grace_s:g}s after stop; exiting", file=sys.stderr)
            os._exit(EXIT_BUS_FAILED)
    finally:
        stopping.cancel()
    if not task.cancelled():
        task.result()
