"""``flctl aggregator --hospital H``: one hospital's aggregator against a real Kafka."""

from __future__ import annotations

import argparse
import asyncio
import sys

from flproc.clock import wall_ms
from flproc.health import run_service
from flproc.logs import prepare_process
from flproc.options import Subparsers, env_option
from schemas.chunking import DEFAULT_TIMEOUT_MS
from services.aggregator.app import build
from services.aggregator.config import AggregatorConfig
from services.aggregator.errors import SettingError


def register(subparsers: Subparsers) -> None:
    """Add ``flctl aggregator``."""
    p = subparsers.add_parser(
        "aggregator",
        help="run one hospital's aggregator (Kafka only, outbound)",
        description="Fold a hospital's device updates from fl.v1.updates.<H> into one "
        "partial aggregate per round on fl.v1.partials; runs until SIGINT/SIGTERM.",
    )
    env_option(p, "--hospital", env="FL_HOSPITAL", help="hospital id this aggregator serves")
    env_option(
        p,
        "--kafka-bootstrap",
        env="FL_KAFKA_BOOTSTRAP",
        default="127.0.0.1:9092",
        help="Kafka bootstrap servers, comma separated",
    )
    env_option(
        p, "--token-secret", env="FL_TOKEN_SECRET", help="admission token secret (as selectors)"
    )
    env_option(
        p,
        "--tick-ms",
        env="FL_AGGREGATOR_TICK_MS",
        type=int,
        default=50,
        help="how often round deadlines are checked (ms)",
    )
    env_option(
        p,
        "--stream-timeout-ms",
        env="FL_AGGREGATOR_STREAM_TIMEOUT_MS",
        type=int,
        default=DEFAULT_TIMEOUT_MS,
        help="an upload with no new chunk for this long is dropped (ms)",
    )
    env_option(
        p, "--group", env="FL_AGGREGATOR_GROUP", help="consumer group (default aggregator.<H>)"
    )
    env_option(
        p,
        "--catch-up-idle-ms",
        env="FL_AGGREGATOR_CATCH_UP_IDLE_MS",
        type=int,
        default=2000,
        help="start-up reads end after this long without a record",
    )
    env_option(
        p,
        "--park-ms",
        env="FL_AGGREGATOR_PARK_MS",
        type=int,
        default=10_000,
        help="how long an update may wait for its round's plan before it is rejected",
    )
    env_option(
        p,
        "--park-limit",
        env="FL_AGGREGATOR_PARK_LIMIT",
        type=int,
        default=10_000,
        help="updates waiting for their plan at most",
    )
    env_option(p, "--log-format", env="FL_LOG_FORMAT", default="json", help="json or console")
    env_option(p, "--log-level", env="FL_LOG_LEVEL", default="info", help="log level")
    p.set_defaults(handler=_run)


def config_from_args(args: argparse.Namespace) -> AggregatorConfig:
    """Build the validated config from parsed flags (raises SettingError)."""
    return AggregatorConfig(
        hospital=args.hospital or "",
        token_secret=(args.token_secret or "").encode(),
        kafka_bootstrap=args.kafka_bootstrap,
        group=args.group or "",
        tick_ms=args.tick_ms,
        stream_timeout_ms=args.stream_timeout_ms,
        catch_up_idle_ms=args.catch_up_idle_ms,
        park_ms=args.park_ms,
        park_limit=args.park_limit,
    )


def _run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except SettingError as exc:
        print(f"flctl aggregator: {exc}", file=sys.stderr)
        return 2
    prepare_process(args.log_format, args.log_level)
    return run_service("aggregator", lambda stop: _serve(config, stop))


async def _serve(config: AggregatorConfig, stop: asyncio.Event) -> None:
    from flbus.kafka import KafkaBus  # imported here: only the real process needs aiokafka

    async with KafkaBus(config.kafka_bootstrap, client_id=f"aggregator-{config.hospital}") as bus:
        await build(config, bus, wall_ms).run(stop)
