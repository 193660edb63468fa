"""Start, stop and inspect a local Mosquitto and a local single-node Kafka (KRaft).

Used by ``flctl brokers up|down|status`` and by the test fixtures, so that what a
developer runs by hand is what the tests run against. No Docker is needed:
Mosquitto comes from the OS package, Kafka from its released jars on Maven
Central, fetched once into a cache by the committed recipe ``flctl/kafka/pom.xml``.

Layout of the data directory (default ``~/.cache/nightshift/brokers``)::

    mosquitto/mosquitto.conf   generated config (its path marks our process)
    mosquitto/data/            persistence
    mosquitto/state.json       pid and port of the process ``up`` started
    kafka/server.properties    generated config (its path marks our process)
    kafka/data/                log.dirs (KRaft metadata and topic data)
    kafka/state.json           pid and ports of the process ``up`` started
    kafka/format.json          cluster id and ports the data dir was formatted for

Logs go to the log directory (default ``<data dir>/logs``).

Exceptions::

    BrokerError                 anything that stops a broker from being had
     +-- ToolMissing            a program is not installed (names it and how to install it)
     +-- PortInUse              another process holds a port we were asked to use
     +-- BrokerStartFailed      the process started but died or did not answer in time
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

KAFKA_POM = Path(__file__).with_name("kafka") / "pom.xml"
DEFAULT_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nightshift"
DEFAULT_DATA_DIR = DEFAULT_HOME / "brokers"
_EXTRA_TOOL_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/opt/homebrew/bin")

Progress = Callable[[str], None]


class BrokerError(RuntimeError):
    """A local broker could not be started, reached or stopped."""


class ToolMissing(BrokerError):
    """A program a broker needs is not installed."""

    def __init__(self, tool: str, hint: str) -> None:
        super().__init__(f"{tool} not found: {hint}")
        self.tool = tool
        self.hint = hint


class PortInUse(BrokerError):
    """A port is held by a process that ``up`` did not start."""


class BrokerStartFailed(BrokerError):
    """A broker process exited or did not answer before the timeout."""


@dataclass(frozen=True)
class BrokerEndpoints:
    """Where the brokers answer; ``None`` for a broker that was not asked for."""

    mqtt_url: str | None
    kafka_bootstrap: str | None


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


# --- tools -------------------------------------------------------------------


def find_tool(name: str, search_path: str | None = None) -> str | None:
    """Find an executable on ``search_path`` (default: PATH plus the sbin dirs)."""
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_TOOL_DIRS])
    return shutil.which(name, path=search_path)


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """Return the Kafka version the committed pom pins."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text())
    if not match:
        raise BrokerError(f"no <kafka.version> in {pom}")
    return match.group(1)


def default_kafka_cache() -> Path:
    """Return the jar cache directory: ``$FL_KAFKA_CACHE`` or one per Kafka version."""
    env = os.environ.get("FL_KAFKA_CACHE")
    return Path(env) if env else DEFAULT_HOME / f"kafka-{kafka_version()}"


def ensure_kafka_jars(
    cache: Path, *, progress: Progress = lambda _: None, search_path: str | None = None
) -> Path:
    """Fetch the Kafka jars into ``cache/libs`` with mvn unless already there; return libs."""
    libs = cache / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    mvn = find_tool("mvn", search_path)
    if mvn is None:
        raise ToolMissing(
            "mvn", f"apt-get install maven (needed once to fetch the Kafka jars into {libs})"
        )
    progress(f"fetching Apache Kafka {kafka_version()} jars into {libs} with mvn (once) ...")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-B",
        "-ntp",
        "-Dstyle.color=never",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        if "Copying " not in line:  # one line per jar is noise; the summary follows
            progress("  mvn: " + line.rstrip())
        tail = [*tail[-19:], line.rstrip()]
    if proc.wait() != 0:
        raise BrokerError(
            f"fetching the Kafka jars failed (mvn exit {proc.returncode}); "
            f"is Maven Central reachable? last output:\n" + "\n".join(tail)
        )
    done.write_text(kafka_version() + "\n")
    progress(f"Kafka jars ready in {libs}")
    return libs


def _check_java(search_path: str | None) -> str:
    java = find_tool("java", search_path)
    if java is None:
        raise ToolMissing(
            "java", "apt-get install openjdk-17-jre-headless (Kafka 4 needs Java 17+)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise ToolMissing(
            "java 17+",
            f"found {out.splitlines()[0] if out else java}; "
            "apt-get install openjdk-17-jre-headless",
        )
    return java


# --- processes ---------------------------------------------------------------


def _cmdline(pid: int) -> str | None:
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


def _stop_pid(pid: int, marker: str, grace: float) -> bool:
    """SIGTERM (then SIGKILL after ``grace``) a process whose command line holds ``marker``."""
    cmd = _cmdline(pid)
    if cmd is None or marker not in cmd:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if _cmdline(pid) is None:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if _cmdline(pid) is None:
            break
        time.sleep(0.1)
    return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- protocol probes ---------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def mqtt_answers(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True when an MQTT v5 CONNECT on ``host:port`` gets a successful CONNACK."""
    client_id = b"flctl-probe-" + secrets.token_hex(4).encode()
    var = b"\x00\x04MQTT\x05\x02\x00\x0a\x00"  # v5, clean start, keepalive 10, no properties
    body = var + struct.pack(">H", len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            head = _recv_exact(sock, 2)
            rest = _recv_exact(sock, head[1])
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return head[0] == 0x20 and len(rest) >= 2 and rest[1] == 0
    except OSError:
        return False


def kafka_answers(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True when a Kafka Metadata v4 request on ``host:port`` lists at least one broker."""
    corr = secrets.randbelow(2**31)
    client = b"flctl-probe"
    # header v1: api_key 3 (Metadata), version 4, correlation id, client id;
    # body: topics = empty array, allow_auto_topic_creation = false
    req = struct.pack(">hhih", 3, 4, corr, len(client)) + client + struct.pack(">ib", 0, 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(req)) + req)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            resp = _recv_exact(sock, size)
        got_corr, _throttle, n_brokers = struct.unpack(">iii", resp[:12])
        return bool(got_corr == corr and n_brokers > 0)
    except (OSError, struct.error):
        return False


# --- the brokers -------------------------------------------------------------


class _Broker:
    """What Mosquitto and Kafka share: state file, liveness, start and stop."""

    name = ""

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
        cmd = _cmdline(pid) if pid > 0 else None
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
            if _port_open(port):
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
        return f"pid {pid}: {_cmdline(pid)!r}"

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
        stopped = _stop_pid(pid, str(self.config), grace)
        self.state_file.unlink(missing_ok=True)
        if stopped:
            return f"{self.name} stopped (pid {pid})"
        return f"{self.name} was not running (stale pid {pid} is not ours; left alone)"

    def status(self) -> BrokerStatus:
        pid = self.running_pid()
        port = self.recorded_port() or self.port if pid else self.port
        if pid is None:
            note = "port in use by another process" if _port_open(port) else ""
            return BrokerStatus(self.name, "stopped", port, None, self.endpoint(), note)
        state = "running" if self.answers() else "starting"
        return BrokerStatus(self.name, state, port, pid, self.endpoint())


class _Mosquitto(_Broker):
    name = "mosquitto"

    binary = ""

    @property
    def config(self) -> Path:
        return self.root / "mosquitto.conf"

    def endpoint(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def answers(self) -> bool:
        return mqtt_answers(self.port)

    def prepare(self) -> None:
        binary = find_tool("mosquitto", self.search_path)
        if binary is None:
            raise ToolMissing(
                "mosquitto", "apt-get install mosquitto (macOS: brew install mosquitto)"
            )
        self.binary = binary
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            "# generated by flctl brokers up; edits are overwritten",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",  # loopback only: the listener binds 127.0.0.1
            "persistence true",
            f"persistence_location {data}/",
            "log_dest stderr",
            "log_type error warning notice information",
            "max_queued_messages 10000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot write data/
        self.config.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config)]


class _Kafka(_Broker):
    name = "kafka"

    heap = "512m"

    def __init__(
        self,
        root: Path,
        log_dir: Path,
        port: int,
        progress: Progress,
        search_path: str | None,
        *,
        controller_port: int,
        cache: Path,
    ) -> None:
        super().__init__(root, log_dir, port, progress, search_path)
        self.controller_port, self.cache = controller_port, cache
        self.java, self.libs = "", cache / "libs"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answers(self) -> bool:
        return kafka_answers(self.port)

    def ports(self) -> list[int]:
        return [self.port, self.controller_port]

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        log4j = self.root / "log4j2.properties"
        return [
            self.java,
            f"-Xmx{self.heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        self.java = _check_java(self.search_path)
        self.libs = ensure_kafka_jars(
            self.cache, progress=self.progress, search_path=self.search_path
        )
        data = self.root / "data"
        props = {
            "node.id": "1",
            "process.roles": "broker,controller",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "log.dirs": str(data),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",  # the default 50 slows a 2-core start-up
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": "2097152",
        }
        self.config.write_text(
            "# generated by flctl brokers up; edits are overwritten\n"
            + "".join(f"{k}={v}\n" for k, v in props.items())
        )
        (self.root / "log4j2.properties").write_text(
            "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = OUT\n"
            "appender.out.type = Console\nappender.out.name = OUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
            "logger.org.name = org.apache.kafka\nlogger.org.level = WARN\n"
        )
        self._format(data)

    def _format(self, data: Path) -> None:
        """Format the KRaft storage once per data dir and port pair."""
        stamp = self.root / "format.json"
        want = {"port": self.port, "controller_port": self.controller_port}
        try:
            have = json.loads(stamp.read_text())
        except (FileNotFoundError, ValueError):
            have = {}
        if {k: have.get(k) for k in want} == want and (data / "meta.properties").exists():
            return
        if data.exists():
            # The voter set recorded in the metadata log names the controller port.
            self.progress(f"kafka: ports changed, re-formatting {data} (topics are dropped)")
            shutil.rmtree(data)
        cluster_id = _kafka_cluster_id()
        self.progress(f"kafka: formatting KRaft storage in {data}")
        out = subprocess.run(
            self._java_cmd(
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(self.config),
            ),
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise BrokerStartFailed(f"kafka storage format failed:\n{out.stdout}{out.stderr}")
        stamp.write_text(json.dumps({**want, "cluster_id": cluster_id}))

    def command(self) -> list[str]:
        return self._java_cmd("kafka.Kafka", str(self.config))


def _kafka_cluster_id() -> str:
    """A random Kafka cluster id: 16 random bytes, base64url without padding."""
    while True:  # a leading "-" would read as an option to the storage tool
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalBrokers:
    """A local Mosquitto and a local single-node Kafka, managed through a data directory."""

    def __init__(
        self,
        mqtt_port: int = 1883,
        kafka_port: int = 9092,
        data_dir: Path | str | None = None,
        log_dir: Path | str | None = None,
        *,
        kafka_controller_port: int | None = None,
        kafka_cache: Path | str | None = None,
        search_path: str | None = None,
        progress: Progress = lambda _: None,
    ) -> None:
        """Describe the brokers; nothing starts until :meth:`up`.

        ``kafka_controller_port`` defaults to ``kafka_port + 1``; ``kafka_cache``
        to :func:`default_kafka_cache`; ``search_path`` (a PATH string) is where
        mosquitto, java and mvn are looked up; ``progress`` receives one line
        per step.
        """
        self.data_dir = Path(data_dir or DEFAULT_DATA_DIR).expanduser().resolve()
        logs = Path(log_dir).expanduser().resolve() if log_dir else self.data_dir / "logs"
        cache = Path(kafka_cache).expanduser() if kafka_cache else default_kafka_cache()
        self.mosquitto = _Mosquitto(
            self.data_dir / "mosquitto", logs, mqtt_port, progress, search_path
        )
        self.kafka = _Kafka(
            self.data_dir / "kafka",
            logs,
            kafka_port,
            progress,
            search_path,
            controller_port=kafka_controller_port or kafka_port + 1,
            cache=cache,
        )

    def _chosen(self, mqtt: bool, kafka: bool) -> Iterator[_Broker]:
        if mqtt:
            yield self.mosquitto
        if kafka:
            yield self.kafka

    def up(
        self, timeout: float = 120.0, *, mqtt: bool = True, kafka: bool = True
    ) -> BrokerEndpoints:
        """Start what is not running yet and wait until every chosen broker answers.

        Parameters
        ----------
        timeout: seconds to wait for the brokers to answer, after tools and jars are ready.
        mqtt, kafka: which brokers to bring up.

        Returns
        -------
        The endpoints of the chosen brokers. Raises a :class:`BrokerError`
        subclass naming what is missing; a broker this call started is stopped
        again when another one fails, so nothing half-started is left behind.
        """
        started: list[_Broker] = []
        try:
            for broker in self._chosen(mqtt, kafka):
                if broker.start() is not None:
                    started.append(broker)
            deadline = time.monotonic() + timeout
            for broker in self._chosen(mqtt, kafka):
                broker.wait(deadline)
        except BaseException:
            for broker in started:
                broker.stop(grace=10)
            raise
        return BrokerEndpoints(
            mqtt_url=self.mosquitto.endpoint() if mqtt else None,
            kafka_bootstrap=self.kafka.endpoint() if kafka else None,
        )

    def down(self, *, mqtt: bool = True, kafka: bool = True, grace: float = 30.0) -> list[str]:
        """Stop the brokers ``up`` started from this data directory; one line per broker."""
        return [broker.stop(grace) for broker in self._chosen(mqtt, kafka)]

    def status(self) -> list[BrokerStatus]:
        """Report each broker's state, port and pid."""
        return [self.mosquitto.status(), self.kafka.status()]
