"""A network namespace that refuses every inbound connection: an outbound-only hospital.

One veth pair joins the namespace to the host on a private /30 (host end
``.1``, namespace end ``.2``); inside, iptables drops every inbound packet
that is not loopback or part of a connection the namespace opened itself, and
IPv6 is switched off so nothing slips past the IPv4 rules. The SYNs of inbound
connection attempts are dropped by a rule of their own, so its counter says
how many were tried. Needs root and iproute2; :func:`unavailable` says why
not, in one line. Names are unique per run, and :meth:`OutboundOnly.remove`
(called by the context manager, also on failure) deletes what was created.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"
IP = shutil.which("ip") or "/usr/sbin/ip"
SYN_RULE = "fl-inbound-connection"  # the comment naming the rule that drops inbound SYNs


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on ``check`` a failure raises with its stderr."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr.strip()}")
    return out


def unavailable() -> str | None:
    """Why a namespace with an iptables policy cannot be made here (None when it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool in (IP, IPTABLES):
        if not os.access(tool, os.X_OK):
            return f"{tool} not found (apt-get install iproute2 iptables)"
    probe = f"flprobe{secrets.token_hex(3)}"
    try:
        made = run(IP, "netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"ip netns add failed: {made.stderr.strip()}"
        listed = run(IP, "netns", "exec", probe, IPTABLES, "-w", "-S", "INPUT", check=False)
        if listed.returncode != 0:
            return f"iptables does not work inside a namespace: {listed.stderr.strip()}"
    finally:
        run(IP, "netns", "del", probe, check=False)
    return None


@dataclass
class OutboundOnly:
    """A namespace ``name`` joined to the host by ``host_ip`` <-> ``inner_ip``."""

    name: str
    host_if: str
    host_ip: str
    inner_ip: str

    @property
    def prefix(self) -> tuple[str, ...]:
        """Run a command inside: ``[*prefix, argv...]`` (``ip netns exec`` execs the command)."""
        return (IP, "netns", "exec", self.name)

    def inside(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace."""
        return run(*self.prefix, *argv, check=check)

    def create(self) -> None:
        """The namespace, the veth pair with its addresses, loopback up; no firewall yet."""
        inner_if = "n" + self.host_if[1:]
        run(IP, "netns", "add", self.name)
        run(IP, "link", "add", self.host_if, "type", "veth", "peer", "name", inner_if)
        run(IP, "link", "set", inner_if, "netns", self.name)
        run(IP, "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        run(IP, "link", "set", self.host_if, "up")
        self.inside(IP, "addr", "add", f"{self.inner_ip}/30", "dev", inner_if)
        self.inside(IP, "link", "set", inner_if, "up")
        self.inside(IP, "link", "set", "lo", "up")
        for conf in ("all", "default", inner_if):
            self.inside("sysctl", "-q", "-w", f"net.ipv6.conf.{conf}.disable_ipv6=1", check=False)

    def refuse_inbound(self) -> None:
        """INPUT: loopback and replies to the namespace's own connections, nothing else."""
        rules = [
            ["-P", "INPUT", "DROP"],
            ["-P", "FORWARD", "DROP"],
            ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
            ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
            ["-A", "INPUT", "-p", "tcp", "--syn", "-m", "comment", "--comment", SYN_RULE,
             "-j", "DROP"],
            ["-A", "INPUT", "-j", "DROP"],
        ]  # fmt: skip
        for rule in rules:
            self.inside(IPTABLES, "-w", *rule)

    def refused_syns(self) -> int:
        """Inbound connection attempts (TCP SYNs) the firewall dropped so far."""
        table = self.inside(IPTABLES, "-w", "-L", "INPUT", "-v", "-x", "-n").stdout
        for line in table.splitlines():
            if SYN_RULE in line:
                return int(line.split()[0])
        raise AssertionError(f"no {SYN_RULE} rule in INPUT:\n{table}")

    def tcp_listeners(self) -> list[str]:
        """Listening TCP sockets inside the namespace (``ss -Htln`` lines)."""
        return [line for line in self.inside("ss", "-Htln").stdout.splitlines() if line.strip()]

    @contextlib.contextmanager
    def listener(self, port: int) -> Iterator[None]:
        """A TCP listener on ``0.0.0.0:port`` inside the namespace, while the block runs."""
        code = (
            "import socket, sys, time\n"
            "s = socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()\n"
            "print('ready', flush=True); time.sleep(300)\n"
        )
        proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-c", code, str(port)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            yield
        finally:
            proc.kill()
            proc.wait(10)

    def connects_from_host(self, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection from the host to ``inner_ip:port`` is accepted."""
        try:
            with socket.create_connection((self.inner_ip, port), timeout=timeout):
                return True
        except OSError:
            return False

    def remove(self) -> None:
        """Delete the namespace (its end of the veth goes with it) and the host end."""
        run(IP, "netns", "del", self.name, check=False)
        run(IP, "link", "del", self.host_if, check=False)


def _free_subnet() -> tuple[str, str]:
    """Host and namespace addresses of a /30 in 10.0.0.0/8 that no interface uses."""
    taken = run(IP, "-4", "-o", "addr", "show").stdout
    for _ in range(100):
        a, b, c = 64 + secrets.randbelow(180), secrets.randbelow(256), 4 * secrets.randbelow(64)
        net = f"10.{a}.{b}."
        if net not in taken:
            return f"{net}{c + 1}", f"{net}{c + 2}"
    raise RuntimeError("no free 10.x.y.0/24 for a test namespace")


@contextlib.contextmanager
def outbound_only() -> Iterator[OutboundOnly]:
    """A fresh outbound-only namespace for the block; removed afterwards, also on failure."""
    tag = f"{os.getpid() % 10000:04d}{secrets.token_hex(2)}"
    host_ip, inner_ip = _free_subnet()
    ns = OutboundOnly(f"fl-outbound-{tag}", f"h{tag}", host_ip, inner_ip)
    try:
        ns.create()
        yield ns
    finally:
        ns.remove()
