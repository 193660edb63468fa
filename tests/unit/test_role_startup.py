"""Role commands: --help lists every variable, bad settings and dead buses end in one line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from flbus.errors import BrokerUnavailableError, BusError
from flctl import brokers_cli, demo_cli
from flctl.main import build_parser, main
from flctl.roles import aggregator, coordinator, devices, selector
from flproc.health import Liveness, Progress, heartbeat, run_service
from flproc.settings import LOGGING, Setting, resolve
from services.aggregator.config import AggregatorConfig
from services.coordinator.config import CoordinatorConfig, RoundSettings
from services.selector.config import SelectorConfig

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("no_fl_env")]

DECLARED: dict[str, tuple[Setting, ...]] = {
    "selector": (*selector.PROCESS, *selector.SETTINGS, *LOGGING),
    "aggregator": (*aggregator.SETTINGS, *LOGGING),
    "coordinator": (*coordinator.SETTINGS, *coordinator.ROUND_SETTINGS, *coordinator.PROCESS,
                    *LOGGING),
    "devices": (*devices.SETTINGS, *devices.LOGGING),
    "demo": demo_cli.SETTINGS,
}  # fmt: skip


def _command(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("command", sorted(DECLARED))
def test_role_help_lists_every_variable_and_flag(command: str) -> None:
    help_text = _command(build_parser(), command).format_help()
    for setting in DECLARED[command]:
        assert setting.env in help_text and setting.flag in help_text, setting.field


@pytest.mark.parametrize(
    ("action", "flags"),
    [
        ("up", {"--mqtt-port", "--kafka-port", "--kafka-controller-port", "--data-dir",
                "--log-dir", "--kafka-cache", "--timeout", "--only", "--secure", "--mqtts-port"}),
        ("down", {"--data-dir", "--only"}),
        ("status", {"--data-dir", "--mqtt-port", "--kafka-port"}),
        ("fetch", {"--kafka-cache"}),
    ],
)  # fmt: skip
def test_brokers_action_lists_only_the_flags_it_uses(action: str, flags: set[str]) -> None:
    parser = _command(build_parser(), "brokers", action)
    listed = {o for a in parser._actions for o in a.option_strings} - {"-h", "--help"}
    assert listed == flags


def test_brokers_bad_port_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["brokers", "status", "--mqtt-port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "flctl brokers: --mqtt-port / FL_MQTT_PORT: must be an integer in [1, 65535], got 70000\n"
    )
    assert brokers_cli.MQTT_PORT.env == "FL_MQTT_PORT"


@pytest.mark.parametrize(
    ("argv", "env", "event"),
    [
        (["selector", "--workers", "0"], {}, "selector.config_invalid"),
        (["aggregator", "--hospital", "h0", "--tick-ms", "0"], {}, "aggregator.config_invalid"),
        (["devices", "--workers", "-1"], {}, "devices.config_invalid"),
        (["devices", "--workers", "1", "--devices-per-hospital", "100"], {},
         "devices.config_invalid"),
        (["selector", "--mqtt-url", "http://alice:hunter2-url@broker"], {},
         "selector.config_invalid"),
    ],
)  # fmt: skip
def test_role_bad_setting_logs_and_prints_no_secret(
    argv: list[str],
    env: dict[str, str],
    event: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FL_TOKEN_SECRET", "hunter2-token")
    monkeypatch.setenv("FL_MQTT_URL", "mqtt://alice:hunter2-url@broker:1883")
    monkeypatch.setattr("flproc.startup.prepare_process", lambda **_: None)  # keep the capture
    with capture_logs() as logs:
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert [e["event"] for e in logs] == [event]
    assert logs[0]["flag"] in err and logs[0]["env"] in err and len(err.splitlines()) == 1
    assert "hunter2" not in repr(logs) and "hunter2" not in err


@pytest.mark.parametrize(
    "config",
    [
        SelectorConfig(token_secret=b"hunter2-token"),
        AggregatorConfig(hospital="h0", token_secret=b"hunter2-token"),
        CoordinatorConfig(models=("breast_cancer",), hospitals=("h0",)),
    ],
)
def test_role_config_repr_shows_no_secret(config: object) -> None:
    assert "hunter2" not in repr(config) and "hunter2" not in str(config)


def _serve_raising(exc: BaseException) -> Any:
    async def serve(stop: asyncio.Event) -> None:
        raise exc

    return serve


@pytest.mark.parametrize(
    "failure",
    [
        BrokerUnavailableError("no MQTT broker answered at mqtt://alice:hunter2@b:1883"),
        ExceptionGroup("tasks", [BrokerUnavailableError("no MQTT broker answered at b:1883")]),
    ],
)
def test_run_service_bus_failure_is_one_line_and_exit_1(
    failure: BaseException, capsys: pytest.CaptureFixture[str]
) -> None:
    with capture_logs() as logs:
        code = run_service("selector", _serve_raising(failure), (BusError,), prog="flctl selector")
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("flctl selector: no MQTT broker answered at ")
    assert len(err.splitlines()) == 1 and "hunter2" not in err
    assert [e["event"] for e in logs] == ["selector.bus_failed"]


def test_run_service_other_errors_keep_their_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        run_service("selector", _serve_raising(ZeroDivisionError()), (BusError,))


def test_run_service_clean_stop_is_exit_0() -> None:
    async def serve(stop: asyncio.Event) -> None:
        return None

    assert run_service("selector", serve, (BusError,)) == 0


def test_settings_defaults_agree_with_the_config_defaults() -> None:
    nothing = argparse.Namespace()
    secret = {"FL_TOKEN_SECRET": "s"}
    assert SelectorConfig.from_settings(
        resolve(nothing, selector.SETTINGS, environ=secret)
    ) == SelectorConfig(token_secret=b"s")
    assert AggregatorConfig(
        **resolve(nothing, aggregator.SETTINGS, environ=secret | {"FL_HOSPITAL": "h0"})
    ) == AggregatorConfig(hospital="h0", token_secret=b"s")
    # The command runs 30 rounds of FedAdam with a 5 s window; code that builds
    # RoundSettings itself gets endless FedAvg rounds and a 2 s window.
    assert RoundSettings.from_settings(
        resolve(nothing, coordinator.ROUND_SETTINGS, environ={})
    ) == dataclasses.replace(
        RoundSettings(), rounds=30, server_optimizer="fedadam", selection_window_ms=5_000
    )


def test_run_service_stops_within_grace_when_serve_ignores_stop() -> None:
    async def stubborn(stop: asyncio.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.Event().wait()  # never looks at stop, like a worker stuck on a dead broker

    started = time.monotonic()
    assert run_service("selector", stubborn, (BusError,), stop_grace_s=0.2) == 0
    assert time.monotonic() - started < 2.0


async def test_heartbeat_goes_stale_while_a_probe_complains(tmp_path: Path) -> None:
    health = tmp_path / "healthy"
    now = [0.0]
    progress = Progress("device messages", stall_s=10.0, clock=lambda: now[0])
    liveness = Liveness()
    liveness.add(progress.problem)
    stop = asyncio.Event()
    progress.took()
    now[0] = 11.0  # one message waits and none was handled for 11 s
    beat = asyncio.create_task(heartbeat(stop, health, every_s=0.01, liveness=liveness))
    await asyncio.sleep(0.05)
    assert not health.exists()
    progress.done()
    await asyncio.sleep(0.05)
    assert health.exists()
    stop.set()
    await beat
