"""``flctl brokers up|down|status|fetch``: a local Mosquitto and Kafka without Docker.

Each action lists only the settings it reads: ``up`` all of them, ``down``
the data directory, ``status`` the data directory and ports, ``fetch`` the
jar cache.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flproc.errors import SettingError
from flproc.parsers import Range, integer, number, path
from flproc.settings import EXIT_BAD_SETTING, Setting, Subparsers, add_settings, explain, resolve

_PORT = integer(Range(1, 65535))

MQTT_PORT = Setting("mqtt_port", "--mqtt-port", "FL_MQTT_PORT",
                    "Mosquitto listener port on 127.0.0.1", _PORT, "1883")  # fmt: skip
KAFKA_PORT = Setting("kafka_port", "--kafka-port", "FL_KAFKA_PORT",
                     "Kafka PLAINTEXT listener port on 127.0.0.1", _PORT, "9092")  # fmt: skip
CONTROLLER_PORT = Setting(
    "kafka_controller_port", "--kafka-controller-port", "FL_KAFKA_CONTROLLER_PORT",
    "Kafka KRaft controller port (default: kafka port + 1)", _PORT,
)  # fmt: skip
LOG_DIR = Setting("log_dir", "--log-dir", "FL_LOG_DIR", "broker logs (default: <data dir>/logs)",
                  path)  # fmt: skip
KAFKA_CACHE = Setting(
    "kafka_cache", "--kafka-cache", "FL_KAFKA_CACHE",
    "where the Kafka jars are fetched once (default: ~/.cache/nightshift/kafka-<version>)", path,
)  # fmt: skip
TIMEOUT = Setting("timeout", "--timeout", "FL_BROKERS_TIMEOUT",
                  "seconds to wait for the brokers to answer",
                  number(Range(0, low_open=True)), "120")  # fmt: skip
# --secure: authentication and ACLs from a `flctl provision` directory.
SECURE = Setting("secure", "--secure", "FL_BROKERS_SECURE",
                 "a `flctl provision` directory: both brokers refuse anonymous clients; Mosquitto "
                 "applies its password file and ACL (and TLS if it holds tls/), Kafka its "
                 "SASL/SCRAM users (kafka/) and the per-role ACLs of docs/security.md",
                 path)  # fmt: skip
MQTTS_PORT = Setting("mqtts_port", "--mqtts-port", "FL_MQTTS_PORT",
                     "Mosquitto TLS port (with --secure and its tls/)", _PORT, "8883")  # fmt: skip

SECURITY = (SECURE, MQTTS_PORT)


def _data_dir() -> Setting:
    from flctl.brokers import DEFAULT_DATA_DIR

    return Setting("data_dir", "--data-dir", "FL_DATA_DIR",
                   "configs, pid files and broker data", path, str(DEFAULT_DATA_DIR))  # fmt: skip


def register(subparsers: Subparsers) -> None:
    """Add ``flctl brokers up|down|status|fetch``."""
    data_dir = _data_dir()
    brokers = subparsers.add_parser(
        "brokers",
        help="start/stop a local Mosquitto and single-node Kafka (no Docker)",
        description="Run a local Mosquitto (from the OS package) and a single-node Apache "
        "Kafka in KRaft mode (released jars, fetched once with mvn). `up` is idempotent and "
        "waits until both answer; `down` stops only what `up` started.",
    )
    actions = brokers.add_subparsers(dest="brokers_action", required=True, metavar="ACTION")
    uses = {
        "up": (
            MQTT_PORT,
            KAFKA_PORT,
            CONTROLLER_PORT,
            data_dir,
            LOG_DIR,
            KAFKA_CACHE,
            TIMEOUT,
            *SECURITY,
        ),
        "down": (data_dir,),
        "status": (data_dir, MQTT_PORT, KAFKA_PORT),
        "fetch": (KAFKA_CACHE,),
    }
    helps = {
        "up": "start the brokers and wait until they answer",
        "down": "stop the brokers `up` started",
        "status": "show each broker's state, port and pid (exit 3 if one is not running)",
        "fetch": "fetch the Kafka jars into the cache now (needs mvn once)",
    }
    for action, settings in uses.items():
        p = actions.add_parser(action, help=helps[action])
        add_settings(p, settings)
        if action in ("up", "down"):
            p.add_argument(
                "--only", choices=("mqtt", "kafka"), help="act on one broker only (default: both)"
            )
        p.set_defaults(brokers_settings=settings)
    actions.choices["up"].description = (
        "Start what is not running and wait until it answers. "
        "Prints `export FL_MQTT_URL=... FL_KAFKA_BOOTSTRAP=...` on stdout, "
        'so `eval "$(flctl brokers up)"` points other commands at them.'
    )
    brokers.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Carry out the action; exit 1 when a broker fails, 2 on a bad setting, 3 if one is down."""
    from flctl.brokers import BrokerError

    settings: tuple[Setting, ...] = args.brokers_settings
    try:
        v = resolve(args, settings)
    except SettingError as exc:
        print(f"flctl brokers: {explain(exc, settings)}", file=sys.stderr)
        return EXIT_BAD_SETTING
    try:
        return _act(args.brokers_action, v, getattr(args, "only", None))
    except BrokerError as exc:
        print(f"flctl brokers: {exc}", file=sys.stderr)
        return 1


def _act(action: str, v: dict[str, Any], only: str | None) -> int:
    from flctl.brokers import LocalBrokers, default_kafka_cache, ensure_kafka_jars

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if action == "fetch":
        libs = ensure_kafka_jars(v["kafka_cache"] or default_kafka_cache(), progress=progress)
        progress(f"Kafka jars in {libs}")
        return 0
    # The settings are named after LocalBrokers' parameters; the others keep its defaults.
    local = LocalBrokers(**{k: x for k, x in v.items() if k != "timeout"}, progress=progress)
    which = {"mqtt": only in (None, "mqtt"), "kafka": only in (None, "kafka")}
    if action == "up":
        endpoints = local.up(v["timeout"], **which)
        if endpoints.mqtt_url:
            print(f"export FL_MQTT_URL={endpoints.mqtt_url}")
        if endpoints.kafka_bootstrap:
            print(f"export FL_KAFKA_BOOTSTRAP={endpoints.kafka_bootstrap}")
        return 0
    if action == "down":
        for line in local.down(**which):
            print(line)
        return 0
    states = local.status()
    for state in states:
        print(state.line())
    return 0 if all(s.state == "running" for s in states) else 3
