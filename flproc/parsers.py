"""How a setting's text becomes a value, and the ranges numbers must lie in.

A parser takes the text a user typed (a flag's value, an ``FL_*`` variable,
or a default written the same way) and returns the value, or raises
``ValueError`` with a problem that says what is valid ("must be a number in
(0, 1], got '2'"); :func:`flproc.settings.resolve` adds which setting it was.
Configs check their numbers with the same :class:`Range`, so a value built in
code is held to the same bounds as one typed on the command line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flproc.errors import SettingError
from flproc.redaction import redact

Parse = Callable[[str], object]


@dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: integers or any finite number, between optional bounds."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not accepted
    high_open: bool = False
    integer: bool = False

    def __str__(self) -> str:
        def num(x: float) -> str:
            return f"{x:g}"

        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{num(self.low)}, {num(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {num(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {num(self.high)}"
        return kind

    def holds(self, value: object) -> bool:
        """Whether ``value`` is a number of the right kind, finite and within the bounds."""
        kinds = (int,) if self.integer else (int, float)
        if not isinstance(value, kinds) or isinstance(value, bool) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not accepted ("must be an integer >= 1, got 0"), or None."""
        return None if self.holds(value) else f"must be {self}, got {value!r}"

    def check(self, setting: str, value: object) -> None:
        """Raise :class:`SettingError` naming ``setting`` unless ``value`` is accepted."""
        problem = self.problem(value)
        if problem is not None:
            raise SettingError(setting, problem)

    def parse(self, text: str) -> Any:
        """Parser of a number in this range (an ``int`` if :attr:`integer`)."""
        try:
            value = int(text.strip()) if self.integer else float(text.strip())
        except ValueError:
            raise ValueError(f"must be {self}, got {text!r}") from None
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


ANY = Range()


def integer(within: Range = ANY) -> Callable[[str], int]:
    """Parser of an integer in ``within``."""
    return dataclasses.replace(within, integer=True).parse


def number(within: Range = ANY) -> Callable[[str], float]:
    """Parser of a finite number in ``within``."""
    return dataclasses.replace(within, integer=False).parse


def seconds_as_ms(within: Range = ANY) -> Callable[[str], int]:
    """Parser of a duration typed in seconds (``within`` is in seconds), given in ms."""
    seconds = number(within)

    def parse(text: str) -> int:
        return round(seconds(text) * 1000)

    return parse


def text(raw: str) -> str:
    """The text as typed, surrounding blanks removed."""
    return raw.strip()


def names(raw: str) -> tuple[str, ...]:
    """Comma-separated names, blanks and empty items dropped."""
    return tuple(x.strip() for x in raw.split(",") if x.strip())


def path(raw: str) -> Path:
    """A file system path, ``~`` expanded."""
    return Path(raw.strip()).expanduser()


def ids_or_count(prefix: str) -> Callable[[str], tuple[str, ...]]:
    """Parser of distinct ids ("h0,icu-2") or a count ("3": prefix0, prefix1, prefix2)."""

    def parse(raw: str) -> tuple[str, ...]:
        raw = raw.strip()
        if raw.isdigit():
            if int(raw) < 1:
                raise ValueError(f"must be a count >= 1 or distinct ids, got {raw!r}")
            return tuple(f"{prefix}{i}" for i in range(int(raw)))
        ids = names(raw)
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"must be a count >= 1 or distinct ids, got {raw!r}")
        return ids

    return parse


def host_ports(raw: str) -> str:
    """Kafka bootstrap servers: ``host:port[,host:port...]``, returned as typed."""
    hosts = [h.strip() for h in raw.split(",")]
    if not all(h.rpartition(":")[0] and h.rpartition(":")[2].isdigit() for h in hosts):
        raise ValueError(f"must be host:port[,host:port...], got {raw!r}")
    return raw.strip()


def mqtt_url(raw: str) -> str:
    """An MQTT broker URL ``mqtt[s]://[user:password@]host[:port][?ca=...]``, as typed."""
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(
            f"must look like mqtt[s]://[user:password@]host[:port], got {redact(raw)!r}"
        )
    return raw.strip()


def secret_bytes(raw: str) -> bytes:
    """A secret as bytes, exactly as typed (blanks are part of it)."""
    return raw.encode()
