"""Secrets out of messages and logs.

Secret config fields are declared ``field(repr=False)`` (so no ``repr`` shows
them) and secret settings ``Setting(secret=True)`` (so no help text or error
shows them). What remains are secrets inside ordinary strings: a broker URL
may carry ``user:password@``. :func:`redact` masks those, and the logging
set-up runs :func:`redact_event` over every log line as a last guard.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

MASK = "***"

_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):[^@/\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` masked."""
    if "@" not in text:
        return text
    return _CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: :func:`redact` every string value of a log line."""
    for key, value in event.items():
        if isinstance(value, str) and "@" in value:
            event[key] = redact(value)
    return event
