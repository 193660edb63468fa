"""The model store port: what the coordinator needs to keep model versions.

A version is immutable once stored: its record (lineage, metrics), its
weights by parameter name and, optionally, the serialized ONNX model a
deployment serves. Beside each version the store keeps the server optimizer's
state, so a restarted coordinator resumes adaptive optimizers where they were.

Implementations: :mod:`flstore.files` and :mod:`flstore.memory`; one contract
suite (``tests/contracts/store.py``) runs against both. The coordinator calls a
store from a worker thread (writes are blocking I/O kept off its event loop),
so an implementation must be safe to call from any one thread at a time per
model; different models may be written from different threads.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class VersionRecord:
    """One model version: where it came from and what it scored.

    ``parent_version`` is -1 for a model's first version; ``round_id`` is the
    round that made it (0 for the first); ``note`` is free text ("initial").
    """

    model: str
    version: int
    parent_version: int
    round_id: int
    created_at_ms: int
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


class ModelStore(abc.ABC):
    """Where the coordinator keeps every model version it publishes."""

    @abc.abstractmethod
    def put(
        self, record: VersionRecord, weights: Mapping[str, np.ndarray], onnx_model: bytes = b""
    ) -> None:
        """Store a new version; all of it or nothing.

        Parameters
        ----------
        record:
            Lineage and metrics of the version; ``record.model`` and
            ``record.version`` name it.
        weights:
            Parameters by name. The store keeps its own copy: changing the
            arrays afterwards does not change the stored version.
        onnx_model:
            The serialized ONNX model with these weights (what a deployment
            serves); empty when there is none.

        Raises
        ------
        VersionExists
            The version was stored before (the stored one is left unchanged).
        StorageFailed
            The medium failed; no version was stored.
        """

    @abc.abstractmethod
    def get(self, model: str, version: int) -> tuple[VersionRecord, dict[str, np.ndarray]]:
        """A stored version.

        Parameters
        ----------
        model, version:
            Which version.

        Returns
        -------
        The version's record and its weights by name (arrays the caller may
        change without changing the store).

        Raises
        ------
        VersionNotFound
            No such version (the message names it).
        StorageFailed
            The version exists but cannot be read.
        """

    @abc.abstractmethod
    def versions(self, model: str) -> list[VersionRecord]:
        """Every stored version of a model.

        Parameters
        ----------
        model:
            The model's name.

        Returns
        -------
        The records, oldest (lowest version number) first; empty for a model
        never stored.
        """

    @abc.abstractmethod
    def onnx_model(self, model: str, version: int) -> bytes:
        """The serialized ONNX model stored with a version.

        Parameters
        ----------
        model, version:
            Which version.

        Returns
        -------
        The bytes given to :meth:`put`.

        Raises
        ------
        VersionNotFound
            No such version, or it was stored without an ONNX model.
        """

    @abc.abstractmethod
    def put_server_state(self, model: str, version: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Keep the server optimizer's state after making a version.

        Parameters
        ----------
        model, version:
            The version the state belongs to. It may be written before the
            version itself (the coordinator does, so a stored version always
            has its state), and it replaces any state kept earlier for it.
        arrays:
            The state as named arrays (``ServerOptState.to_arrays()``); copied.

        Raises
        ------
        StorageFailed
            The medium failed.
        """

    @abc.abstractmethod
    def server_state(self, model: str, version: int) -> dict[str, np.ndarray] | None:
        """The server optimizer's state kept with a version.

        Parameters
        ----------
        model, version:
            Which version.

        Returns
        -------
        The arrays given to :meth:`put_server_state`, or None if none were kept.
        """

    def latest(self, model: str) -> VersionRecord | None:
        """The newest version of ``model``, or None if it has none."""
        found = self.versions(model)
        return found[-1] if found else None
