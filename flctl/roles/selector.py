"""``flctl selector``: run one selector replica on real MQTT and Kafka until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from typing import Any

from flbus.errors import BusError
from flproc.clock import wall_ms
from flproc.health import Liveness, run_service
from flproc.parsers import Range, integer
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
from services.common.settings import KAFKA_AUTH, kafka_credentials
from services.selector.config import SETTINGS, SelectorConfig

NAME, PROG = "selector", "flctl selector"

#: What the process needs besides its config: where the buses are.
PROCESS: tuple[Setting, ...] = (
    MQTT_URL,
    KAFKA_BOOTSTRAP,
    *KAFKA_AUTH,
    Setting("replica_id", "--replica-id", "FL_SELECTOR_ID",
            "this replica's MQTT client id, unique per replica "
            "(default: <share group>-<host name>-<pid>)"),
    Setting("mqtt_session_expiry_s", "--mqtt-session-expiry", "FL_SELECTOR_SESSION_EXPIRY",
            "seconds the broker keeps a lost replica's session, and queues its share of "
            "the devices' messages (0: the others take its share at once)",
            integer(Range(0)), "0"),
    Setting("mqtt_keepalive_s", "--mqtt-keepalive", "FL_SELECTOR_KEEPALIVE",
            "seconds between MQTT pings; a silent replica is dropped after 1.5 times this",
            integer(Range(1)), "10"),
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
        lambda: (config_from_args(args), _process(args)),
        prog=PROG,
    )
    if ready is None:
        return EXIT_BAD_SETTING
    config, process = ready
    liveness = Liveness()
    return run_service(
        NAME,
        lambda stop: _serve(process, config, stop, liveness),
        (BusError,),
        prog=PROG,
        liveness=liveness,
    )


def _process(args: argparse.Namespace) -> dict[str, Any]:
    """The process settings, with the Kafka credentials made (raises SettingError)."""
    process = resolve(args, PROCESS)
    return {**process, "kafka_credentials": kafka_credentials(process)}


def replica_id(given: str | None, share_group: str) -> str:
    """The replica's MQTT client id: ``given``, else one unique to this host and process."""
    if given:
        return given
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"{share_group}-{host or 'host'}-{os.getpid()}"


async def _serve(
    process: dict[str, Any], config: SelectorConfig, stop: asyncio.Event, liveness: Liveness
) -> None:
    from flbus.kafka import KafkaBus
    from flbus.mqtt import MqttBus
    from services.selector.app import build

    # A replica in a shared subscription must not keep a session when it is gone:
    # the broker would go on queueing its share of the devices' messages for it.
    pubsub = MqttBus(
        process["mqtt_url"],
        client_id=replica_id(process["replica_id"], config.share_group),
        session_expiry=process["mqtt_session_expiry_s"],
        keepalive=process["mqtt_keepalive_s"],
    )
    log_bus = KafkaBus(
        process["kafka_bootstrap"],
        client_id="selector",
        credentials=process["kafka_credentials"],
    )
    async with pubsub, log_bus:
        selector = build(config, pubsub, log_bus, wall_ms)
        liveness.add(selector.problem)
        await selector.run(stop)
