"""``flctl aggregator --hospital H``: one hospital's aggregator against a real Kafka."""

from __future__ import annotations

import argparse
import asyncio

from flbus.errors import BusError
from flbus.kafka_auth import KafkaCredentials
from flproc.clock import wall_ms
from flproc.health import Liveness, run_service
from flproc.settings import EXIT_BAD_SETTING, LOGGING, Subparsers, add_settings, resolve
from flproc.startup import start
from services.aggregator.app import build
from services.aggregator.config import SETTINGS, AggregatorConfig
from services.common.settings import KAFKA_AUTH, kafka_credentials

NAME, PROG = "aggregator", "flctl aggregator"


def register(subparsers: Subparsers) -> None:
    """Add ``flctl aggregator``."""
    p = subparsers.add_parser(
        NAME,
        help="run one hospital's aggregator (Kafka only, outbound)",
        description="Fold a hospital's device updates from fl.v1.updates.<H> into one "
        "partial aggregate per round on fl.v1.partials.<hospital>; runs until SIGINT/SIGTERM. "
        "Exit codes: 0 stopped, 1 a bus failed, 2 a bad setting.",
    )
    add_settings(p, (*SETTINGS, *KAFKA_AUTH, *LOGGING))
    p.set_defaults(handler=main)


def config_from_args(args: argparse.Namespace) -> AggregatorConfig:
    """The validated config from flags, ``FL_*`` variables and defaults (raises SettingError)."""
    return AggregatorConfig(**resolve(args, SETTINGS))


def main(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; exit 2 on a bad setting, 1 on a bus failure."""
    ready = start(
        NAME,
        args,
        (*SETTINGS, *KAFKA_AUTH),
        lambda: (config_from_args(args), kafka_credentials(resolve(args, KAFKA_AUTH))),
        prog=PROG,
    )
    if ready is None:
        return EXIT_BAD_SETTING
    config, credentials = ready
    liveness = Liveness()
    return run_service(
        NAME,
        lambda stop: _serve(config, credentials, stop, liveness),
        (BusError,),
        prog=PROG,
        liveness=liveness,
    )


async def _serve(
    config: AggregatorConfig,
    credentials: KafkaCredentials | None,
    stop: asyncio.Event,
    liveness: Liveness,
) -> None:
    from flbus.kafka import KafkaBus  # imported here: only the real process needs aiokafka

    name = f"aggregator-{config.hospital}"
    async with KafkaBus(config.kafka_bootstrap, client_id=name, credentials=credentials) as bus:
        aggregator = build(config, bus, wall_ms)
        liveness.add(aggregator.problem)
        await aggregator.run(stop)
