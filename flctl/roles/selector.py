"""``flctl selector``: run one selector replica on real MQTT and Kafka until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from flbus.errors import BusError
from flproc.clock import wall_ms
from flproc.health import run_service
from flproc.settings import (
    EXIT_BAD_SETTING,
    KAFKA_BOOTSTRAP,
    LOGGING,
    MQTT_URL,
    Setting,
    Subparsers,
    add_settings,
    resolve,
)
from flproc.startup import start
from services.selector.config import SETTINGS, SelectorConfig

NAME, PROG = "selector", "flctl selector"

#: What the process needs besides its config: where the buses are.
PROCESS: tuple[Setting, ...] = (
    MQTT_URL,
    KAFKA_BOOTSTRAP,
    Setting("mqtt_client_id", "--mqtt-client-id", "FL_SELECTOR_CLIENT_ID",
            "stable MQTT client id (default: a fresh one per run)"),
)  # fmt: skip


def register(subparsers: Subparsers) -> None:
    """Add ``flctl selector``."""
    p = subparsers.add_parser(
        NAME,
        help="run a selector replica (admission, pace steering, upload bridge)",
        description="Answer device check-ins with tasks or retry times, bridge uploads and "
        "evaluations into Kafka and republish plans, model versions and artifacts retained. "
        "Stateless: run as many replicas as you like on one share group. "
        "Exit codes: 0 stopped, 1 a bus failed, 2 a bad setting.",
    )
    add_settings(p, (*PROCESS, *SETTINGS, *LOGGING))
    p.set_defaults(handler=main)


def config_from_args(args: argparse.Namespace) -> SelectorConfig:
    """The validated config from flags, ``FL_*`` variables and defaults (raises SettingError)."""
    return SelectorConfig.from_settings(resolve(args, SETTINGS))


def main(args: argparse.Namespace) -> int:
    """Run a selector until SIGINT/SIGTERM; exit 2 on a bad setting, 1 on a bus failure."""
    ready = start(
        NAME,
        args,
        (*PROCESS, *SETTINGS),
        lambda: (config_from_args(args), resolve(args, PROCESS)),
        prog=PROG,
    )
    if ready is None:
        return EXIT_BAD_SETTING
    config, process = ready
    return run_service(NAME, lambda stop: _serve(process, config, stop), (BusError,), prog=PROG)


async def _serve(process: dict[str, Any], config: SelectorConfig, stop: asyncio.Event) -> None:
    from flbus.kafka import KafkaBus
    from flbus.mqtt import MqttBus
    from services.selector.app import build

    pubsub = MqttBus(process["mqtt_url"], client_id=process["mqtt_client_id"])
    log_bus = KafkaBus(process["kafka_bootstrap"], client_id="selector")
    async with pubsub, log_bus:
        selector = build(config, pubsub, log_bus, wall_ms)
        await selector.run(stop)
