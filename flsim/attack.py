"""Malicious devices for poisoning drills: honest in every respect but the update they send.

An attacker is a real SDK device: it checks in, is admitted with a valid token,
trains on its shard, and uploads an update of the right shapes with finite
values. Between its training and the broker, :class:`AttackerBus` rewrites the
update: ``sign_flip`` multiplies it by ``-1``, ``scale`` by ``-10`` (a boosted
step away from where honest training goes), ``boost`` points it the other way
with the largest norm the round's bound lets through (99% of ``norm_bound``,
the strongest norm-bounded push in that direction). Only the aggregate rule
and the norm bound stand in its way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from flbus.port import Headers, PubSubBus, Subscription
from schemas import ModelUpdate, Tensors
from schemas.chunking import ChunkedReceiver, encode_chunked
from schemas.errors import SchemaError
from schemas.topics import UPLOAD

ATTACKS: dict[str, float] = {"sign_flip": -1.0, "scale": -10.0, "boost": -1.0}
"""Each behaviour and the factor it multiplies an update by (``boost``: then to the bound)."""
BOOST_SHARE = 0.99  # of the norm bound: just inside it, so the aggregator accepts it


@dataclass(frozen=True)
class Attack:
    """``fraction`` of the devices (rounded, chosen by ``seed``) send poisoned updates."""

    fraction: float = 0.0
    behaviour: str = "sign_flip"
    seed: int = 0
    norm_bound: float = 0.0  # the round's clip norm, which ``boost`` aims just under

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"attackers must be a fraction in [0, 1], got {self.fraction}")
        if self.behaviour not in ATTACKS:
            raise ValueError(f"attack must be one of {sorted(ATTACKS)}, got {self.behaviour!r}")
        if self.behaviour == "boost" and not self.norm_bound > 0:
            raise ValueError("a boost attack needs the norm bound it aims at (clip norm > 0)")

    def poison(self, update: np.ndarray) -> np.ndarray:
        """The update an attacker sends instead of ``update`` (float32)."""
        out = np.asarray(update, np.float32) * np.float32(ATTACKS[self.behaviour])
        if self.behaviour == "boost":
            norm = float(np.linalg.norm(out.astype(np.float64)))
            if norm > 0:
                out *= np.float32(BOOST_SHARE * self.norm_bound / norm)
        return out

    def choose(self, devices: Sequence[str]) -> frozenset[str]:
        """The attackers among ``devices``: ``round(fraction * len)`` of them, seeded."""
        count = round(self.fraction * len(devices))
        rng = np.random.default_rng([self.seed, 0xA77AC])
        picked = rng.choice(len(devices), size=count, replace=False)
        return frozenset(devices[int(i)] for i in picked)


class AttackerBus(PubSubBus):
    """A device's bus that poisons every model update it uploads as ``attack`` says."""

    def __init__(self, inner: PubSubBus, attack: Attack, max_chunk_bytes: int = 512 * 1024) -> None:
        self._inner, self._attack, self._max_chunk = inner, attack, max_chunk_bytes
        self._rx = ChunkedReceiver(timeout_ms=2**40)
        self.poisoned = 0  # updates rewritten

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    @property
    def connected(self) -> bool:
        return self._inner.connected

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._inner.on_reconnect(callback)

    async def subscribe(
        self, topic_filters: Sequence[str], *, share_group: str | None = None
    ) -> Subscription:
        return await self._inner.subscribe(topic_filters, share_group=share_group)

    async def publish(
        self, topic: str, value: bytes, *, headers: Headers = (), retain: bool = False
    ) -> None:
        if not topic.endswith("/" + UPLOAD):
            await self._inner.publish(topic, value, headers=headers, retain=retain)
            return
        try:
            msg = self._rx.add(value, 0)
        except SchemaError:  # not a chunk (a TrainingFailure): pass it on untouched
            await self._inner.publish(topic, value, headers=headers, retain=retain)
            return
        if not isinstance(msg, ModelUpdate):
            return  # a chunk of an upload not complete yet: held until its last chunk
        flat = self._attack.poison(msg.tensors.flat)
        poisoned = dataclasses.replace(msg, tensors=Tensors(msg.tensors.manifest, flat))
        self.poisoned += 1
        for data in encode_chunked(poisoned, msg.update_id, self._max_chunk):
            await self._inner.publish(topic, data, headers=headers, retain=retain)
