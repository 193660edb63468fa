"""One registry of setting names: flags, ``FL_*`` variables and ``--help`` from one list.

A role declares each setting once, next to its typed config::

    SETTINGS = (
        Setting("tick_ms", "--tick-ms", "FL_AGGREGATOR_TICK_MS",
                "how often round deadlines are checked (ms)", integer(), "50"),
        ...
    )

The command adds them to its parser (:func:`add_settings`) and turns the
parsed arguments into the config's values (:func:`resolve`): a flag on the
command line beats its environment variable, which beats the default. Every
value is parsed the same way wherever it came from (defaults are written as a
user would type them), so a bad ``FL_*`` value is reported like a bad flag.
Problems raise :class:`~flproc.errors.SettingError` naming the config field;
:func:`explain` renders it as ``--flag / FL_VAR: problem`` and :func:`refuse`
reports it and returns the exit code for a bad setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import structlog

from flproc.errors import SettingError
from flproc.parsers import Parse, host_ports, mqtt_url, text
from flproc.redaction import MASK, redact

Subparsers = Any  # argparse's _SubParsersAction is private; registrars receive one

EXIT_BAD_SETTING = 2


@dataclass(frozen=True)
class Setting:
    """One setting: the config field it fills and how a user spells it."""

    field: str  # the config field (or command option) the value fills
    flag: str  # "--tick-ms"
    env: str  # "FL_AGGREGATOR_TICK_MS"
    help: str
    parse: Parse = text  # text -> value; raises ValueError with the problem
    default: str | None = None  # as a user would type it; None: no value
    secret: bool = False  # never shown in help, errors or logs
    choices: tuple[str, ...] = ()
    required: bool = False
    also: tuple[str, ...] = ()  # further fields the same value fills

    def __post_init__(self) -> None:
        if not self.flag.startswith("--") or not self.env.startswith("FL_"):
            raise ValueError(f"{self.field}: flag must start with -- and env with FL_")
        if self.secret and self.default is not None:
            raise ValueError(f"{self.field}: a secret has no default")

    @property
    def spelled(self) -> str:
        """``--flag / FL_VAR``, how messages name the setting."""
        return f"{self.flag} / {self.env}"

    def fills(self, field: str) -> bool:
        """Whether this setting's value fills config field ``field``."""
        return field == self.field or field in self.also

    def but(self, **changes: Any) -> Setting:
        """The same setting with some attributes changed (a command's own default, help)."""
        return dataclasses.replace(self, **changes)

    def help_text(self) -> str:
        """The help line: what it is, then ``[env FL_X; default: ...]``."""
        if self.required:
            tail = "; required"
        elif self.default is not None:
            tail = f"; default: {self.default}" if self.default else "; default: empty"
        else:
            tail = ""
        return f"{self.help} [env {self.env}{tail}]".replace("%", "%%")

    def read(self, raw: str) -> Any:
        """Parse ``raw``; a problem raises SettingError naming the field, never the secret."""
        if self.choices and raw.strip() not in self.choices:
            shown = MASK if self.secret else redact(raw)
            raise SettingError(
                self.field, f"must be one of {', '.join(self.choices)}, got {shown!r}"
            )
        try:
            return self.parse(raw.strip() if self.choices else raw)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            problem = "is not valid (the value is secret)" if self.secret else redact(str(exc))
            raise SettingError(self.field, problem) from None


def add_settings(parser: argparse.ArgumentParser, settings: Iterable[Setting]) -> None:
    """Add one flag per setting; each action carries its Setting (``action.setting``)."""
    for setting in settings:
        action = parser.add_argument(
            setting.flag,
            dest=setting.field,
            default=None,
            metavar="{" + ",".join(setting.choices) + "}"
            if setting.choices
            else setting.flag.lstrip("-").upper().replace("-", "_"),
            help=setting.help_text(),
        )
        action.setting = setting  # type: ignore[attr-defined]


def resolve(
    args: argparse.Namespace, settings: Iterable[Setting], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Field -> value: the flag if given, else the ``FL_*`` variable if set, else the default.

    An empty variable counts as unset. Raises SettingError naming the field
    when a value does not parse or a required setting has none.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in settings:
        raw = getattr(args, setting.field, None)
        if raw is None:
            raw = env.get(setting.env) or setting.default
        if raw is None and setting.required:
            raise SettingError(setting.field, "is required")
        value = None if raw is None else setting.read(raw)
        values[setting.field] = value
        for field in setting.also:
            values[field] = value
    return values


def amend(settings: Iterable[Setting], field: str, **changes: Any) -> tuple[Setting, ...]:
    """``settings`` with the one that fills ``field`` changed (a command's own default, help)."""
    settings = tuple(settings)
    if not any(s.field == field for s in settings):
        raise KeyError(field)
    return tuple(s.but(**changes) if s.field == field else s for s in settings)


def explain(error: SettingError, settings: Iterable[Setting]) -> str:
    """``--flag / FL_VAR: problem`` for the setting that fills ``error.setting``."""
    for setting in settings:
        if setting.fills(error.setting):
            return f"{setting.spelled}: {error.problem}"
    return f"{error.setting}: {error.problem}"


def refuse(
    name: str,
    error: SettingError,
    settings: Iterable[Setting],
    *,
    prog: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Report a bad setting: one line on stderr, a ``<name>.config_invalid`` log line; exit 2."""
    settings = tuple(settings)
    line = explain(error, settings)
    print(f"{prog or name}: {line}", file=out or sys.stderr, flush=True)
    found = next((s for s in settings if s.fills(error.setting)), None)
    structlog.get_logger(name).error(
        f"{name}.config_invalid",
        setting=error.setting,
        flag=found.flag if found else None,
        env=found.env if found else None,
        problem=error.problem,
    )
    return EXIT_BAD_SETTING


# -- settings every process shares ------------------------------------------------

MQTT_URL = Setting(
    "mqtt_url",
    "--mqtt-url",
    "FL_MQTT_URL",
    "MQTT broker URL (device plane), mqtt[s]://[user:password@]host[:port]",
    mqtt_url,
    "mqtt://127.0.0.1:1883",
)
KAFKA_BOOTSTRAP = Setting(
    "kafka_bootstrap",
    "--kafka-bootstrap",
    "FL_KAFKA_BOOTSTRAP",
    "Kafka bootstrap servers, host:port[,host:port] (service plane)",
    host_ports,
    "127.0.0.1:9092",
)
LOG_FORMAT = Setting(
    "log_format",
    "--log-format",
    "FL_LOG_FORMAT",
    "json lines (services) or console lines (a terminal)",
    default="json",
    choices=("json", "console"),
)
LOG_LEVEL = Setting(
    "log_level",
    "--log-level",
    "FL_LOG_LEVEL",
    "lowest level logged",
    default="info",
    choices=("debug", "info", "warning", "error"),
)
LOGGING = (LOG_FORMAT, LOG_LEVEL)
