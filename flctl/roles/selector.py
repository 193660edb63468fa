"""``flctl selector``: run one selector replica on real MQTT and Kafka until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from flproc.clock import wall_ms
from flproc.health import run_service
from flproc.logs import prepare_process
from flproc.options import Subparsers, bus_options, env_option
from services.selector.config import EligibilityPolicy, SelectorConfig
from services.selector.errors import SelectorConfigError

_log = structlog.get_logger("selector")

#: Config field -> how a user spells it (CLI flag / environment variable).
SETTINGS: dict[str, str] = {
    "token_secret": "--token-secret / FL_TOKEN_SECRET",
    "share_group": "--share-group / FL_SELECTOR_SHARE_GROUP",
    "eligibility": "--eligibility / FL_ELIGIBILITY",
    "min_battery_pct": "--min-battery-pct / FL_MIN_BATTERY_PCT",
    "retry_jitter_ms": "--retry-jitter-ms / FL_RETRY_JITTER_MS",
    "min_backoff_ms": "--min-backoff-ms / FL_MIN_BACKOFF_MS",
    "no_round_retry_ms": "--no-round-retry-ms / FL_NO_ROUND_RETRY_MS",
    "selection_cutoff_ms": "--selection-cutoff-ms / FL_SELECTION_CUTOFF_MS",
    "workers": "--workers / FL_SELECTOR_WORKERS",
    "stats_interval_s": "--stats-interval / FL_STATS_INTERVAL",
}


def register(subparsers: Subparsers) -> None:
    """Add ``flctl selector``."""
    p = subparsers.add_parser(
        "selector",
        parents=[bus_options()],
        help="run a selector replica (admission, pace steering, upload bridge)",
        description="Answer device check-ins with tasks or retry times, bridge uploads and "
        "evaluations into Kafka and republish plans, model versions and artifacts retained. "
        "Stateless: run as many replicas as you like on one share group.",
    )
    opt = env_option
    opt(p, "--token-secret", env="FL_TOKEN_SECRET", help="admission token secret (shared)")
    opt(p, "--share-group", env="FL_SELECTOR_SHARE_GROUP", default="selectors",
        help="MQTT v5 shared subscription group of the replicas")  # fmt: skip
    opt(p, "--eligibility", env="FL_ELIGIBILITY", default="charging,unmetered,idle",
        help="check-in facts a device needs, comma separated, or 'none'")  # fmt: skip
    opt(p, "--min-battery-pct", env="FL_MIN_BATTERY_PCT", type=float, default=0.0,
        help="lowest battery level admitted")  # fmt: skip
    opt(p, "--retry-jitter-ms", env="FL_RETRY_JITTER_MS", type=int, default=60_000,
        help="spread of the retry times given to declined devices")  # fmt: skip
    opt(p, "--min-backoff-ms", env="FL_MIN_BACKOFF_MS", type=int, default=1_000,
        help="earliest a declined device may come back")  # fmt: skip
    opt(p, "--no-round-retry-ms", env="FL_NO_ROUND_RETRY_MS", type=int, default=30_000,
        help="when a device with no open round should come back")  # fmt: skip
    opt(p, "--selection-cutoff-ms", env="FL_SELECTION_CUTOFF_MS", type=int, default=0,
        help="stop admitting this long before a round's deadline")  # fmt: skip
    opt(p, "--workers", env="FL_SELECTOR_WORKERS", type=int, default=16,
        help="device messages handled concurrently (one device stays in order)")  # fmt: skip
    opt(p, "--stats-interval", env="FL_STATS_INTERVAL", type=float, default=30.0,
        help="seconds between selector.stats log lines")  # fmt: skip
    opt(p, "--mqtt-client-id", env="FL_SELECTOR_CLIENT_ID",
        help="stable MQTT client id (default: a fresh one per run)")  # fmt: skip
    opt(p, "--log-format", env="FL_LOG_FORMAT", default="json", help="json or console")
    opt(p, "--log-level", env="FL_LOG_LEVEL", default="info", help="debug, info, warning...")
    p.set_defaults(handler=main)


def config_from_args(args: argparse.Namespace) -> SelectorConfig:
    """Build and validate the config; SelectorConfigError names a bad setting."""
    if not args.token_secret:
        raise SelectorConfigError("token_secret", "is required")
    return SelectorConfig(
        token_secret=args.token_secret.encode(),
        eligibility=EligibilityPolicy.parse(args.eligibility, min_battery_pct=args.min_battery_pct),
        retry_jitter_ms=args.retry_jitter_ms,
        min_backoff_ms=args.min_backoff_ms,
        no_round_retry_ms=args.no_round_retry_ms,
        selection_cutoff_ms=args.selection_cutoff_ms,
        share_group=args.share_group,
        workers=args.workers,
        stats_interval_s=args.stats_interval,
    )


def main(args: argparse.Namespace) -> int:
    """Run a selector until SIGINT/SIGTERM; exit 2 on a bad setting, 1 on a bus failure."""
    prepare_process(args.log_format, args.log_level)
    try:
        config = config_from_args(args)
    except SelectorConfigError as exc:
        flag = SETTINGS.get(exc.setting, "")
        _log.error("selector.config_invalid", setting=exc.setting, flag=flag, problem=exc.problem)
        return 2
    return run_service("selector", lambda stop: _serve(args, config, stop))


async def _serve(args: argparse.Namespace, config: SelectorConfig, stop: asyncio.Event) -> None:
    from flbus.kafka import KafkaBus
    from flbus.mqtt import MqttBus
    from services.selector.app import build

    pubsub = MqttBus(args.mqtt_url, client_id=args.mqtt_client_id)
    log_bus = KafkaBus(args.kafka_bootstrap, client_id="selector")
    async with pubsub, log_bus:
        selector = build(config, pubsub, log_bus, wall_ms)
        await selector.run(stop)
