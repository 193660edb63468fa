"""Drive one paho client from the asyncio loop: its socket on the loop, no network thread.

paho's external-loop mode (as in paho's ``examples/loop_asyncio.py``): the
socket is registered with ``loop.add_reader`` (and ``add_writer`` while paho
has bytes to send); ``loop_read``/``loop_write`` run on the loop thread, so
paho's callbacks do too, and a publish costs no thread wake-up or GIL
hand-over. ``loop_misc`` runs every second for keepalive.

Connecting (TCP connect and TLS handshake, both blocking in paho) runs in a
worker thread so the loop never waits on a slow or unreachable broker; the
socket callbacks paho makes from that thread are handed to the loop with
``call_soon_threadsafe``. Reconnects follow ``reconnect_delay`` (doubling,
reset on a successful CONNACK), as paho's own loop does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable
from typing import Any

from paho.mqtt.client import Client

MISC_INTERVAL_S = 1.0
CLOSE_GRACE_S = 1.0


class LoopDriver:
    """The network loop of one paho client, run by the asyncio event loop."""

    def __init__(
        self,
        client: Client,
        loop: asyncio.AbstractEventLoop,
        reconnect_delay: tuple[float, float],
        on_open: Callable[[Any], None],
    ) -> None:
        """Take over ``client``'s socket callbacks; nothing connects before :meth:`start`."""
        self._client, self._loop, self._on_open = client, loop, on_open
        self._first_delay, self._max_delay = reconnect_delay
        self._delay = self._first_delay
        self._thread = threading.get_ident()  # the loop's thread (we are built on it)
        self._sock: Any = None  # the socket registered with the loop
        self._lost = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[Any] | None = None
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_writing

    def start(self) -> None:
        """Connect, and keep reconnecting, in the background."""
        self._task = self._loop.create_task(self._run())

    def connected(self) -> None:
        """A CONNACK accepted the connection: the next reconnect starts from the first delay."""
        self._delay = self._first_delay

    async def close(self) -> None:
        """Flush what paho queued (a DISCONNECT, say), close the socket, stop reconnecting."""
        self._stopping = True
        if self._connecting is not None:  # a thread may be opening a socket: let it finish
            with contextlib.suppress(Exception):
                await asyncio.shield(self._connecting)
            await asyncio.sleep(0)  # its socket callbacks arrive via call_soon_threadsafe
        if self._sock is not None:
            self._write()
            if self._sock is not None:  # paho closes the socket after sending DISCONNECT
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), CLOSE_GRACE_S)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:  # the broker never let go: drop the socket ourselves
            sock = self._sock
            self._forget(sock)
            sock.close()

    # -- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        client = self._client
        while not self._stopping:
            if self._sock is None:
                self._lost.clear()
                self._connecting = asyncio.ensure_future(asyncio.to_thread(client.reconnect))
                try:
                    await self._connecting
                except (OSError, ValueError):  # refused, unreachable, TLS failure: retry later
                    self._connecting = None
                    await asyncio.sleep(self._delay)
                    self._delay = min(self._delay * 2, self._max_delay)
                    continue
                self._connecting = None
                await asyncio.sleep(0)  # the socket registration queued from the thread
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), MISC_INTERVAL_S)
            if self._sock is not None:
                client.loop_misc()  # keepalive: PINGREQ, or drop a link that stopped answering
            elif not self._stopping:  # lost: wait before reconnecting, as paho's loop does
                await asyncio.sleep(self._delay)
                self._delay = min(self._delay * 2, self._max_delay)

    def _read(self) -> None:
        client = self._client
        client.loop_read()
        sock = self._sock
        # TLS: decrypted bytes already in the SSL buffer do not wake the selector.
        while isinstance(sock, ssl.SSLSocket) and sock is self._sock and sock.pending():
            client.loop_read()

    def _write(self) -> None:
        self._client.loop_write()

    # -- paho's socket callbacks (loop thread, or the connecting thread) ------------

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._thread:
            fn(*args)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _socket_open(self, _c: Client, _u: Any, sock: Any) -> None:
        self._on_open(sock)
        self._on_loop(self._register, sock)

    def _socket_close(self, _c: Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._forget, sock)

    def _want_write(self, _c: Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._writable, sock)

    def _done_writing(self, _c: Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._not_writable, sock)

    # -- loop thread ----------------------------------------------------------------

    def _register(self, sock: Any) -> None:
        self._sock = sock
        self._loop.add_reader(sock, self._read)

    def _forget(self, sock: Any) -> None:
        if sock is not self._sock:
            return
        self._sock = None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._lost.set()

    def _writable(self, sock: Any) -> None:
        if sock is self._sock:
            self._loop.add_writer(sock, self._write)

    def _not_writable(self, sock: Any) -> None:
        if sock is self._sock:
            self._loop.remove_writer(sock)
