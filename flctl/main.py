"""flctl: the platform's command line.

Each command group lives in its own module and is added by a ``register``
function listed in :data:`COMMANDS`; ``register(subparsers)`` adds its parser
and sets ``handler`` (``args -> exit code``) with ``set_defaults``. Every option
that may also come from the environment is a ``flproc.settings.Setting``, added
with ``add_settings``, so ``flctl --help``, compose files and tests see one list
of names (:func:`accepted_env_vars`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from flproc.settings import Setting, Subparsers

#: ``"module:function"`` of every command group, in ``--help`` order. A module
#: that adds a command (demo, coordinator, selector, aggregator, devices,
#: replay, status) appends its registrar here.
COMMANDS: list[str] = [
    "flctl.brokers_cli:register",
    "flctl.provision_cli:register",
    "flctl.demo_cli:register",
    "flctl.images:register",
    "flctl.replay:register",
    "flctl.dlq:register",
    "flctl.roles.devices:register",
    "flctl.roles.coordinator:register",
    "flctl.roles.selector:register",
    "flctl.roles.aggregator:register",
    "flctl.bench_cli:register",
]


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


def settings_of(parser: argparse.ArgumentParser | None = None) -> list[Setting]:
    """Every Setting some flctl command (or subcommand) adds, in parser order."""
    found: list[Setting] = []
    stack = [parser or build_parser()]
    while stack:
        current = stack.pop(0)
        for action in current._actions:
            setting = getattr(action, "setting", None)
            if isinstance(setting, Setting):
                found.append(setting)
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return found


def accepted_env_vars(parser: argparse.ArgumentParser | None = None) -> set[str]:
    """Every environment variable some flctl command reads (for compose checks and docs)."""
    return {setting.env for setting in settings_of(parser)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flctl`` script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
