"""Options that come from a flag or an ``FL_*`` environment variable.

Every option a role reads from the environment is declared with
:func:`env_option`, so ``--help``, compose files and tests see one list of
names.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

Subparsers = Any  # argparse's _SubParsersAction is private; registrars receive one


def env_option(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    env: str,
    help: str,
    type: Callable[[str], Any] = str,
    default: Any = None,
) -> argparse.Action:
    """Add ``flag`` whose default is read from the environment variable ``env``."""
    raw = os.environ.get(env)
    action = parser.add_argument(
        flag,
        type=type,
        default=raw if raw not in (None, "") else default,
        help=f"{help} [env {env}" + ("; default: %(default)s]" if default is not None else "]"),
    )
    action.env = env  # type: ignore[attr-defined]
    return action


def bus_options() -> argparse.ArgumentParser:
    """Parent parser with the broker addresses every service command takes."""
    parent = argparse.ArgumentParser(add_help=False)
    env_option(
        parent,
        "--mqtt-url",
        env="FL_MQTT_URL",
        default="mqtt://127.0.0.1:1883",
        help="MQTT broker URL (device plane)",
    )
    env_option(
        parent,
        "--kafka-bootstrap",
        env="FL_KAFKA_BOOTSTRAP",
        default="127.0.0.1:9092",
        help="Kafka bootstrap servers, comma separated (service plane)",
    )
    return parent
