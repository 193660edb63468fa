"""Liveness for containers: a role touches a file while its event loop runs.

compose.yaml's healthcheck calls a role unhealthy when the file is older than
30 s. The heartbeat runs on the role's own event loop, so a blocked or dead
loop stops it; it says nothing about the broker connections (those fail the
role loudly, and compose restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

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


def run_service(name: str, serve: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run ``serve(stop)`` until SIGINT/SIGTERM sets ``stop``, with the heartbeat beating.

    Returns the process exit code: 0 after a clean stop, 1 when a bus failed
    (logged as ``<name>.bus_failed`` with the reason).
    """
    from flbus.errors import BusError

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with beating(stop):
            await serve(stop)

    try:
        asyncio.run(main())
    except BusError as e:
        structlog.get_logger(name).error(f"{name}.bus_failed", error=str(e))
        return 1
    return 0
