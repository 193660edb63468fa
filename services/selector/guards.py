"""What a device may make a replica hold or do: bounded memories and business-level limits.

Plain data structures with the time passed in; the shell owns one of each.
Memory is bounded by ``capacity`` entries (least recently used go first), so a
flood of made-up identities costs a fixed amount and at worst forgets an
honest device early (which then is treated as new: never refused wrongly).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Hashable

from schemas.topics import DeviceTopic
from services.selector.outputs import Out, audit


class Recent:
    """A bounded set that remembers the ``capacity`` most recently added keys."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def add(self, key: Hashable) -> bool:
        """Remember ``key``; True when it was not remembered before."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._keys)


class RateLimit:
    """At most one event per key every ``interval_ms``; 0 lets everything through."""

    def __init__(self, interval_ms: int, capacity: int) -> None:
        self.interval_ms, self.capacity = interval_ms, capacity
        self._last: OrderedDict[Hashable, int] = OrderedDict()

    def allow(self, key: Hashable, now_ms: int) -> int | None:
        """None when ``key`` may act now (and it is recorded), else when it may next."""
        if self.interval_ms <= 0:
            return None
        last = self._last.get(key)
        if last is not None and now_ms - last < self.interval_ms:
            return last + self.interval_ms
        self._last[key] = now_ms
        self._last.move_to_end(key)
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return None

    def __len__(self) -> int:
        return len(self._last)


def oversized(msg: object, limit: int) -> str | None:
    """The first text field of dataclass ``msg`` (or text in a tuple field) over ``limit``."""
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        value = getattr(msg, f.name)
        texts = value if isinstance(value, tuple) else (value,)
        for text in texts:
            if isinstance(text, str) and len(text) > limit:
                return f"{f.name} has {len(text)} characters, more than {limit}"
    return None


def rate_limited(where: DeviceTopic, next_ms: int, now_ms: int, interval_ms: int) -> Out:
    """The audit of a refused check-in: once per device and interval (the rest are counted)."""
    detail = f"next check-in accepted from at_ms={next_ms}"
    out = audit("checkin.rejected", "rate_limited", detail, now_ms, where=where)
    window = now_ms // max(1, 60 * interval_ms)
    return dataclasses.replace(out, once=("rate_limited", where.hospital, where.device, window))
