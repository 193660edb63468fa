"""Running a broker as a process of its own, found again later through a state file.

``flctl brokers up`` starts a broker in its own session and returns; ``down`` and
``status`` are later commands. So each broker keeps ``state.json`` (pid and
port) in its directory, and a pid counts as ours only while its command line
still names our generated config file: a pid the OS gave to another program
since is left alone. :class:`Broker` is what Mosquitto and Kafka share; each
says how to prepare, start and probe itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flctl.brokers.errors import BrokerError, BrokerStartFailed, PortInUse

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BrokerStatus:
    """One broker's state: ``running``, ``starting`` (alive, not answering) or ``stopped``."""

    name: str
    state: str
    port: int
    pid: int | None
    endpoint: str
    note: str = ""

    def line(self) -> str:
        """Render as one aligned status line."""
        pid = f"pid {self.pid}" if self.pid else "pid -"
        note = f"  ({self.note})" if self.note else ""
        return (
            f"{self.name:<10} {self.state:<8} port {self.port:<6} {pid:<10} {self.endpoint}{note}"
        )


# --- processes ---------------------------------------------------------------


def cmdline(pid: int) -> str | None:
    """Return the command line of a live (non-zombie) process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True
        )
    except OSError:
        return None
    if out.returncode != 0 or not out.stdout.strip() or out.stdout.lstrip().startswith("Z"):
        return None
    return out.stdout.split(None, 1)[1] if " " in out.stdout.strip() else ""


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, marker: str, grace: float) -> bool:
    """SIGTERM (then SIGKILL after ``grace``) a process whose command line holds ``marker``."""
    cmd = cmdline(pid)
    if cmd is None or marker not in cmd:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if cmdline(pid) is None:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if cmdline(pid) is None:
            break
        time.sleep(0.1)
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- one broker --------------------------------------------------------------


class Broker:
    """What Mosquitto and Kafka share: state file, liveness, start and stop."""

    name = ""

    #: Address the client listener binds and advertises; loopback unless a caller that
    #: must be reached from another network namespace sets it (tests/faults/test_outbound_only).
    host = "127.0.0.1"

    def __init__(
        self, root: Path, log_dir: Path, port: int, progress: Progress, search_path: str | None
    ) -> None:
        self.root, self.log_dir, self.port = root, log_dir, port
        self.progress, self.search_path = progress, search_path

    @property
    def config(self) -> Path:
        raise NotImplementedError

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def endpoint(self) -> str:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def ports(self) -> list[int]:
        return [self.port]

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Find tools, write configs, format storage: everything before the process starts."""

    def running_pid(self) -> int | None:
        """Pid of the process ``up`` started, if it is still that process."""
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        pid = int(state.get("pid", 0))
        cmd = cmdline(pid) if pid > 0 else None
        return pid if cmd is not None and str(self.config) in cmd else None

    def recorded_port(self) -> int | None:
        try:
            return int(json.loads(self.state_file.read_text())["port"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def start(self) -> int | None:
        """Start the process unless ours already runs; return the pid, None if already up."""
        pid = self.running_pid()
        if pid is not None:
            port = self.recorded_port()
            if port is not None and port != self.port:
                raise BrokerError(
                    f"{self.name} already running on port {port} (pid {pid}) from {self.root}; "
                    "run `flctl brokers down` first to change its port"
                )
            self.progress(f"{self.name} already running (pid {pid}, port {self.port})")
            return None
        for port in self.ports():
            if port_open(port):
                raise PortInUse(
                    f"{self.name}: port {port} is in use by a process flctl did not start; "
                    "stop it or choose another port (--mqtt-port / --kafka-port)"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.state_file.write_text(json.dumps({"pid": proc.pid, "port": self.port}))
        self.progress(
            f"{self.name} starting (pid {proc.pid}, port {self.port}, log {self.log_file})"
        )
        return proc.pid

    def wait(self, deadline: float) -> None:
        """Block until the broker answers; raise BrokerStartFailed on death or timeout."""
        while time.monotonic() < deadline:
            # Liveness after the probe: a foreign broker that took the port answers too.
            if self.answers() and self.running_pid() is not None:
                return
            if self.running_pid() is None:
                raise BrokerStartFailed(
                    f"{self.name} exited during start-up ({self._why_not_running()}); "
                    f"{self._log_tail()}"
                )
            time.sleep(0.2)
        raise BrokerStartFailed(
            f"{self.name} did not answer on port {self.port} in time; {self._log_tail()}"
        )

    def _why_not_running(self) -> str:
        try:
            pid = int(json.loads(self.state_file.read_text())["pid"])
        except (FileNotFoundError, ValueError, KeyError) as exc:
            return f"no valid {self.state_file.name}: {exc!r}"
        return f"pid {pid}: {cmdline(pid)!r}"

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return "no log"
        return f"last lines of {self.log_file}:\n" + "\n".join(tail)

    def stop(self, grace: float) -> str:
        """Stop our process (never a foreign one that reuses its pid); say what happened."""
        try:
            pid = int(json.loads(self.state_file.read_text())["pid"])
        except (FileNotFoundError, ValueError, KeyError):
            return f"{self.name} not running (nothing started by flctl in {self.root})"
        stopped = stop_pid(pid, str(self.config), grace)
        self.state_file.unlink(missing_ok=True)
        if stopped:
            return f"{self.name} stopped (pid {pid})"
        return f"{self.name} was not running (stale pid {pid} is not ours; left alone)"

    def status(self) -> BrokerStatus:
        pid = self.running_pid()
        port = self.recorded_port() or self.port if pid else self.port
        if pid is None:
            note = "port in use by another process" if port_open(port) else ""
            return BrokerStatus(self.name, "stopped", port, None, self.endpoint(), note)
        state = "running" if self.answers() else "starting"
        return BrokerStatus(self.name, state, port, pid, self.endpoint())
