"""Reading the device hand-outs ``devices/<hospital>.csv`` back (``flctl devices``).

A simulated device connects as itself: its broker URL carries its own
username and password from the hand-out, so the broker's ACL applies to it
exactly as to a real device.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HEADER = ("device_id", "username", "password")


@dataclass(frozen=True)
class DeviceCredential:
    """One device's MQTT identity."""

    username: str
    password: str = field(repr=False)


def read_credentials(paths: list[Path]) -> dict[str, DeviceCredential]:
    """device id -> its credential, from one or more hand-outs.

    Raises ValueError naming the file and line of a malformed row or a device
    listed twice (never showing a password).
    """
    found: dict[str, DeviceCredential] = {}
    for p in paths:
        try:
            with open(p, newline="") as f:
                rows = list(csv.reader(f))
        except OSError as exc:
            raise ValueError(f"cannot read {p}: {exc.strerror or exc}") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{p} is not a device_id,username,password CSV: {exc}") from None
        if not rows or tuple(rows[0]) != HEADER:
            raise ValueError(f"{p}: first line must be {','.join(HEADER)}")
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != 3 or not all(row):
                raise ValueError(f"{p}:{line}: expected 3 non-empty fields, got {len(row)}")
            device, user, password = row
            if device in found:
                raise ValueError(f"{p}:{line}: device {device!r} is listed twice")
            found[device] = DeviceCredential(user, password)
    return found


def with_credentials(url: str, username: str, password: str) -> str:
    """``url`` with ``username:password@`` in it (ids and our secrets need no quoting)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{username}:{password}@{host}"))
