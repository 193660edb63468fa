"""flctl: the platform's command line.

Each command group lives in its own module and is added by a ``register``
function listed in :data:`COMMANDS`; ``register(subparsers)`` adds its parser
and sets ``handler`` (``args -> exit code``) with ``set_defaults``. Every option
that may also come from the environment is declared with :func:`env_option`, so
``flctl --help``, compose files and tests see one list of names
(:func:`accepted_env_vars`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from flproc.options import Subparsers, bus_options, env_option

#: ``"module:function"`` of every command group, in ``--help`` order. A module
#: that adds a command (demo, coordinator, selector, aggregator, devices,
#: replay, status) appends its registrar here.
COMMANDS: list[str] = [
    "flctl.main:register_brokers",
    "flctl.demo_cli:register",
    "flctl.replay:register",
    "flctl.roles.devices:register",
    "flctl.roles.coordinator:register",
    "flctl.roles.selector:register",
    "flctl.roles.aggregator:register",
]


def _broker_options() -> argparse.ArgumentParser:
    from flctl.brokers import DEFAULT_DATA_DIR

    parent = argparse.ArgumentParser(add_help=False)
    env_option(
        parent,
        "--mqtt-port",
        env="FL_MQTT_PORT",
        type=int,
        default=1883,
        help="Mosquitto listener port on 127.0.0.1",
    )
    env_option(
        parent,
        "--kafka-port",
        env="FL_KAFKA_PORT",
        type=int,
        default=9092,
        help="Kafka PLAINTEXT listener port on 127.0.0.1",
    )
    env_option(
        parent,
        "--kafka-controller-port",
        env="FL_KAFKA_CONTROLLER_PORT",
        type=int,
        help="Kafka KRaft controller port (default: kafka port + 1)",
    )
    env_option(
        parent,
        "--data-dir",
        env="FL_DATA_DIR",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="configs, pid files and broker data",
    )
    env_option(
        parent,
        "--log-dir",
        env="FL_LOG_DIR",
        type=Path,
        help="broker logs (default: <data dir>/logs)",
    )
    env_option(
        parent,
        "--kafka-cache",
        env="FL_KAFKA_CACHE",
        type=Path,
        help="where the Kafka jars are fetched once (default: ~/.cache/nightshift/kafka-<version>)",
    )
    return parent


def _only(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only", choices=("mqtt", "kafka"), help="act on one broker only (default: both)"
    )


def register_brokers(subparsers: Subparsers) -> None:
    """Add ``flctl brokers up|down|status|fetch``."""
    common = _broker_options()
    brokers = subparsers.add_parser(
        "brokers",
        help="start/stop a local Mosquitto and single-node Kafka (no Docker)",
        description="Run a local Mosquitto (from the OS package) and a single-node Apache "
        "Kafka in KRaft mode (released jars, fetched once with mvn). `up` is idempotent and "
        "waits until both answer; `down` stops only what `up` started.",
    )
    actions = brokers.add_subparsers(dest="brokers_action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        parents=[common],
        help="start the brokers and wait until they answer",
        description="Start what is not running and wait until it answers. "
        "Prints `export FL_MQTT_URL=... FL_KAFKA_BOOTSTRAP=...` on stdout, "
        'so `eval "$(flctl brokers up)"` points other commands at them.',
    )
    env_option(
        up,
        "--timeout",
        env="FL_BROKERS_TIMEOUT",
        type=float,
        default=120.0,
        help="seconds to wait for the brokers to answer",
    )
    _only(up)
    down = actions.add_parser("down", parents=[common], help="stop the brokers `up` started")
    _only(down)
    actions.add_parser(
        "status",
        parents=[common],
        help="show each broker's state, port and pid (exit 3 if one is not running)",
    )
    actions.add_parser(
        "fetch", parents=[common], help="fetch the Kafka jars into the cache now (needs mvn once)"
    )
    brokers.set_defaults(handler=_brokers)


def _brokers(args: argparse.Namespace) -> int:
    from flctl.brokers import BrokerError, LocalBrokers, default_kafka_cache, ensure_kafka_jars

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.brokers_action == "fetch":
        try:
            libs = ensure_kafka_jars(args.kafka_cache or default_kafka_cache(), progress=progress)
        except BrokerError as exc:
            print(f"flctl: {exc}", file=sys.stderr)
            return 1
        progress(f"Kafka jars in {libs}")
        return 0
    local = LocalBrokers(
        args.mqtt_port,
        args.kafka_port,
        args.data_dir,
        args.log_dir,
        kafka_controller_port=args.kafka_controller_port,
        kafka_cache=args.kafka_cache,
        progress=progress,
    )
    only = getattr(args, "only", None)
    which = {"mqtt": only in (None, "mqtt"), "kafka": only in (None, "kafka")}
    try:
        if args.brokers_action == "up":
            endpoints = local.up(args.timeout, **which)
            if endpoints.mqtt_url:
                print(f"export FL_MQTT_URL={endpoints.mqtt_url}")
            if endpoints.kafka_bootstrap:
                print(f"export FL_KAFKA_BOOTSTRAP={endpoints.kafka_bootstrap}")
            return 0
        if args.brokers_action == "down":
            for line in local.down(**which):
                print(line)
            return 0
        states = local.status()
        for state in states:
            print(state.line())
        return 0 if all(s.state == "running" for s in states) else 3
    except BrokerError as exc:
        print(f"flctl: {exc}", file=sys.stderr)
        return 1


def _load(spec: str) -> Callable[[Subparsers], None]:
    module, _, func = spec.partition(":")
    registrar: Callable[[Subparsers], None] = getattr(importlib.import_module(module), func)
    return registrar


def build_parser() -> argparse.ArgumentParser:
    """Build the ``flctl`` parser from every registrar in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="flctl",
        description="Federated learning for hospitals: local brokers, services and demos.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for spec in COMMANDS:
        _load(spec)(subparsers)
    return parser


def accepted_env_vars(parser: argparse.ArgumentParser | None = None) -> set[str]:
    """Every environment variable some flctl command reads (for compose checks and docs)."""
    found = {a.env for a in bus_options()._actions if hasattr(a, "env")}
    stack = [parser or build_parser()]
    while stack:
        current = stack.pop()
        for action in current._actions:
            if hasattr(action, "env"):
                found.add(action.env)
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flctl`` script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
