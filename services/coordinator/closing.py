"""The blocking half of a close: export the new version to ONNX, score it, store it.

:func:`keep_version` is meant for a worker thread: the coordinator hands it to
an executor, so its event loop keeps reading partials and ticking other models
while ONNX Runtime scores and the disk writes. Failures are data: ``NotKept``
names the stage that failed and the error, and the caller abandons the round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flcore.close import NextVersion
from flstore import ModelStore, VersionRecord
from modelzoo import ParamManifest, unflatten
from services.coordinator.evaluation import Evaluator, onnx_model_bytes

Stage = Literal["export", "evaluate", "store"]


@dataclass(frozen=True)
class Kept:
    """The version is stored; ``record`` holds its lineage and every metric."""

    record: VersionRecord


@dataclass(frozen=True)
class NotKept:
    """The version could not be kept: which stage failed, and how."""

    stage: Stage
    error: Exception

    @property
    def reason(self) -> str:
        """The failure in words, for the abandoned round's reason."""
        return f"{self.stage} failed: {type(self.error).__name__}: {self.error}"


def keep_version(
    nxt: NextVersion,
    manifest: ParamManifest,
    store: ModelStore,
    evaluator: Evaluator,
    note: str = "",
) -> Kept | NotKept:
    """Export ``nxt`` as ONNX, score it and store it with its optimizer state (blocking)."""
    stage: Stage = "export"
    try:
        named = unflatten(nxt.weights, manifest)
        onnx_model = onnx_model_bytes(nxt.model, named)
        stage = "evaluate"
        metrics = {**evaluator.evaluate(nxt.model, onnx_model), **nxt.metrics}
        stage = "store"
        record = VersionRecord(
            nxt.model,
            nxt.version,
            nxt.parent_version,
            nxt.round_id,
            nxt.created_at_ms,
            metrics,
            note,
        )
        # The state goes first: the record commits the version, which then always has it.
        store.put_server_state(nxt.model, nxt.version, nxt.server_state.to_arrays())
        store.put(record, named, onnx_model)
    except Exception as e:  # ONNX, ORT and the medium fail in many ways; each ends one round
        return NotKept(stage, e)
    return Kept(record)
