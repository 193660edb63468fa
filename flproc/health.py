"""A service process's run: signals, liveness for containers, exit codes.

A role touches a file while its event loop runs; compose.yaml's healthcheck
calls a role unhealthy when the file is older than 30 s. The heartbeat runs on
the role's own event loop, so a blocked or dead loop stops it; it says nothing
about the broker connections (those fail the role loudly with exit code 1, see
:func:`run_service`, and compose restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from flproc.redaction import redact

HEALTH_FILE = Path(os.environ.get("FL_HEALTH_FILE", "/tmp/fl-healthy"))


async def heartbeat(stop: asyncio.Event, path: Path = HEALTH_FILE, every_s: float = 5.0) -> None:
    """Touch ``path`` every ``every_s`` seconds until ``stop`` is set; never raises OSError."""
    while not stop.is_set():
        with contextlib.suppress(OSError):
            path.touch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


@contextlib.asynccontextmanager
async def beating(stop: asyncio.Event, path: Path = HEALTH_FILE):  # type: ignore[no-untyped-def]
    """Run :func:`heartbeat` for the duration of the block."""
    task = asyncio.create_task(heartbeat(stop, path))
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
) -> int:
    """Run ``serve(stop)`` until SIGINT/SIGTERM sets ``stop``, with the heartbeat beating.

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
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with beating(stop):
            await serve(stop)

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
