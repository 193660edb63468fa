"""A Mosquitto of a test's own, on a free port, that the test may kill -9 and restart.

The shared ``mqtt_url`` broker must survive the session; fault tests need one
they can crash. It is written by the same code as ``flctl brokers up``
(:class:`flctl.brokers.mosquitto.Mosquitto`), so it persists the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flctl.brokers import free_port, mqtt_answers
from flctl.brokers.errors import ToolMissing
from flctl.brokers.mosquitto import Mosquitto


class OwnMosquitto:
    """Start, SIGKILL and restart one Mosquitto whose config and data live in ``root``."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.broker = Mosquitto(root, root, self.port, lambda _m: None, None)
        try:
            self.broker.prepare()
        except ToolMissing as exc:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true and no mosquitto: {exc}", pytrace=False)
            pytest.skip(str(exc))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker's ``mqtt://`` URL."""
        return self.broker.endpoint()

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it answers."""
        log = (self.broker.root / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(self.broker.command(), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not mqtt_answers(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto did not answer on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing saved that was not saved already."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def wipe(self) -> None:
        """Forget everything persisted (a broker that lost its disk)."""
        for f in (self.broker.root / "data").glob("*"):
            f.unlink()
