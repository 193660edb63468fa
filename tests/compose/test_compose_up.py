"""`compose.yaml` run the way a user runs it: prepare, build, up, watch rounds, down.

Under podman and podman-compose (the engine CI has; the file stays Docker Compose
syntax). Needs root podman with runc (scripts/lib.sh configures both under CI);
without them the test skips, or fails under ``CI=true``. Measured on 2 shared cores:
~2.5 min with warm caches (~/.cache/nightshift: wheels, the debootstrap tarball;
podman's layers), ~5.5 min when every image builds anew from a fresh base; a fresh
machine adds debootstrap (~1-3 min) and the wheel downloads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flctl.brokers import free_port

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "nightshift-fl-citest"  # not the user's "nightshift-fl": their volumes stay theirs
HOSPITALS = {"h0", "h1", "h2"}
MODELS = {"digits_mlp", "breast_cancer"}
ROUNDS = 3  # per model, each closed with every hospital's partial
ROUNDS_WITHIN_S = 600
IMAGES = ("nightshift-fl:dev", "nightshift-kafka:dev", "nightshift-mosquitto:dev")
VOLUMES = ("registry", "kafka-data", "mosquitto-data")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and compose cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(cmd)} exit {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


def _json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            found.append(json.loads(line[start:]))
        except ValueError:
            continue
    return found


def _podman_compose() -> list[str]:
    """podman-compose from this interpreter (scripts/install puts it there), else PATH."""
    if importlib.util.find_spec("podman_compose") is not None:
        return [sys.executable, "-m", "podman_compose"]
    found = shutil.which("podman-compose")
    return [found] if found else []


class Stack:
    def __init__(self, secrets: Path) -> None:
        self.env = {
            **os.environ,
            "FL_KAFKA_HOST_PORT": str(free_port()),
            "FL_MQTT_HOST_PORT": str(free_port()),
            "FL_SECRETS": str(secrets),  # not the user's ./secrets
        }
        self.compose = [*_podman_compose(), "-p", PROJECT]

    def __call__(self, *args: str, timeout: float = 900) -> str:
        return _run([*self.compose, *args], timeout, self.env)

    def logs(self, service: str, n: int = 1) -> str:
        done = subprocess.run(
            ["podman", "logs", f"{PROJECT}_{service}_{n}"], capture_output=True, text=True
        )
        return done.stdout + done.stderr

    def remove_volumes(self) -> None:
        names = [f"{PROJECT}_{volume}" for volume in VOLUMES]
        subprocess.run(["podman", "volume", "rm", "-f", *names], capture_output=True)

    def volume_exists(self, volume: str) -> bool:
        cmd = ["podman", "volume", "exists", f"{PROJECT}_{volume}"]
        return subprocess.run(cmd).returncode == 0


def _provision(out: Path) -> str:
    """The deployment's identities, as README tells a user to write them for compose."""
    argv = ["provision", "--out", str(out), "--root", "/secrets"]
    argv += ["--mqtt-url", "mqtt://mosquitto:1883"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FL_")}
    return _run([sys.executable, "-m", "flctl.main", *argv], 60, env)


@pytest.fixture(scope="module")
def engine() -> None:
    if shutil.which("podman") is None or not _podman_compose():
        _unavailable("podman or podman-compose not found (scripts/install installs them as root)")
    if subprocess.run(["podman", "info"], capture_output=True).returncode != 0:
        _unavailable("podman info fails: is /etc/containers/containers.conf set up?")


@pytest.fixture(scope="module")
def stack(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    secrets = tmp_path_factory.mktemp("compose") / "secrets"
    _provision(secrets)
    stack = Stack(secrets)
    stack("down", timeout=300)  # what a killed earlier run left
    stack.remove_volumes()
    try:
        yield stack
    finally:
        stack("down", timeout=300)
        stack.remove_volumes()


def test_compose_refuses_to_start_without_provisioned_secrets(engine: None, tmp_path: Path) -> None:
    """No secrets directory: up fails naming the missing env file, and nothing runs.

    (Docker Compose fails while loading the file; podman-compose creates the containers
    before the first one with an env_file, then fails before starting any.)
    """
    project = PROJECT + "-nosecrets"
    env = {**os.environ, "FL_SECRETS": str(tmp_path / "nothing-here")}
    compose = [*_podman_compose(), "-p", project]
    try:
        done = subprocess.run(
            [*compose, "up", "-d"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        said = done.stdout + done.stderr
        assert f"{tmp_path}/nothing-here/services/" in said, said[-2000:]
        running = _run(["podman", "ps", "--filter", f"name={project}_", "-q"], 60)
        assert not running.strip(), f"containers running without secrets: {running}"
    finally:
        subprocess.run([*compose, "down"], cwd=ROOT, env=env, capture_output=True, timeout=300)


def _brokers_refuse_anonymous_clients(stack: Stack) -> None:
    """The published ports, as anyone on this host reaches them, without a login."""
    import asyncio

    import paho.mqtt.client as mqtt

    from flbus.kafka_auth import refusal

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anonymous")
    codes: list[Any] = []
    client.on_connect = lambda c, u, f, rc, p=None: codes.append(rc)
    client.connect("127.0.0.1", int(stack.env["FL_MQTT_HOST_PORT"]))
    deadline = time.monotonic() + 10
    while not codes and time.monotonic() < deadline:
        client.loop(0.2)
    client.disconnect()
    assert codes and codes[0].is_failure, f"anonymous MQTT client got {codes}"
    why = asyncio.run(refusal(f"127.0.0.1:{stack.env['FL_KAFKA_HOST_PORT']}", None))
    assert why is not None and "authentication" in why, why


def _closed_rounds(coordinator_log: str) -> list[dict[str, Any]]:
    return [r for r in _json_lines(coordinator_log) if r.get("event") == "round.closed"]


def _partials(stack: Stack) -> set[tuple[str, str, int]]:
    """(hospital, model, round) of every non-empty partial the aggregators published."""
    found = set()
    for hospital in sorted(HOSPITALS):
        for r in _json_lines(stack.logs(f"aggregator-{hospital}")):
            if r.get("event") == "partial.published" and r.get("updates", 0) > 0:
                found.add((hospital, r["model"], r["round"]))
    return found


def test_compose_up_trains_rounds_with_every_hospital(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.monotonic()
    _run([sys.executable, "-m", "flctl.main", "images", "prepare"], 900)
    prepared_s = time.monotonic() - t0

    t0 = time.monotonic()
    stack("build", timeout=1200)
    built_s = time.monotonic() - t0
    images = _run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"], 60)
    built = [line for line in images.splitlines() if line.split("/")[-1].split()[0] in IMAGES]
    assert len(built) == len(IMAGES), images

    t_up = time.monotonic()
    stack("up", "-d", timeout=600)
    first_round_s: float | None = None
    done: list[dict[str, Any]] = []
    partials: set[tuple[str, str, int]] = set()
    while time.monotonic() - t_up < ROUNDS_WITHIN_S:
        closed = _closed_rounds(stack.logs("coordinator"))
        if closed and first_round_s is None:
            first_round_s = time.monotonic() - t_up
        partials = _partials(stack) if closed else set()
        done = [
            r
            for r in closed
            if r["reason"] == "all hospitals reported"
            and all((h, r["model"], r["round"]) in partials for h in HOSPITALS)
        ]
        if all(sum(r["model"] == m for r in done) >= ROUNDS for m in MODELS):
            break
        time.sleep(5)
    rounds_s = time.monotonic() - t_up

    # Both selector replicas ran and logged JSON (podman-compose honours deploy.replicas).
    for n in (1, 2):
        assert _json_lines(stack.logs("selector", n)), f"selector replica {n} logged no JSON"
    _brokers_refuse_anonymous_clients(stack)

    t0 = time.monotonic()
    stack("down", timeout=300)
    down_s = time.monotonic() - t0
    still = _run(["podman", "ps", "-a", "--filter", f"name={PROJECT}_", "-q"], 60)
    registry_kept = stack.volume_exists("registry")

    with capsys.disabled():
        print(f"\ncompose: images built ({built_s:.0f} s, prepare {prepared_s:.0f} s):")
        for line in built:
            print(f"  {line}")
        first = f"{first_round_s:.0f} s" if first_round_s is not None else "never"
        print(f"compose: first round closed {first} after up; {len(done)} rounds with every "
              f"hospital in {rounds_s:.0f} s; down took {down_s:.0f} s")  # fmt: skip
        for model in sorted(MODELS):
            accuracy = [f"r{r['round']} {r['accuracy']:.3f}" for r in done if r["model"] == model]
            print(f"  {model}: {len(accuracy)} rounds, accuracy {', '.join(accuracy[:3])}"
                  f"{' ... ' + accuracy[-1] if len(accuracy) > 3 else ''}")  # fmt: skip

    for model in MODELS:
        finished = [r["round"] for r in done if r["model"] == model]
        assert len(finished) >= ROUNDS, (
            f"{model}: {len(finished)} rounds closed with every hospital reporting within "
            f"{ROUNDS_WITHIN_S} s (closed: {finished}, partials: {sorted(partials)})"
        )
    assert not still.strip(), f"containers left after down: {still}"
    assert registry_kept, "compose down dropped the registry volume"
