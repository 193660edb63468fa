"""Where a (re)started coordinator resumes each model from: a finite stored version.

A store can hold a version that must never be served (NaN weights or
metrics, written before versions were checked, or by hand). Start-up does not
crash on it at every start: the newest usable version is found, and a copy of
it is stored as the next version with a note naming what was quarantined and
why, so version numbers only grow and the bad one stays for inspection.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import structlog

from flcore.close import NextVersion
from flcore.server_opt import ServerOptState
from flstore import ModelStore, VersionRecord
from modelzoo import ParamManifest, flatten
from services.coordinator.closing import NotKept, keep_version
from services.coordinator.evaluation import Evaluator

log = structlog.get_logger("coordinator")


def unusable(record: VersionRecord, weights: np.ndarray) -> str | None:
    """Why a stored version must not be served, or None if it may."""
    bad = sorted(k for k, v in record.metrics.items() if not math.isfinite(v))
    if bad:
        return f"metrics not finite: {', '.join(bad)}"
    count = int(np.count_nonzero(~np.isfinite(weights)))
    if count:
        return f"{count} of {weights.size} weights not finite"
    return None


def resume_version(
    model: str,
    manifest: ParamManifest,
    store: ModelStore,
    evaluator: Evaluator,
    initial: Callable[[], np.ndarray],
    now_ms: int,
) -> tuple[VersionRecord, np.ndarray, ServerOptState]:
    """The version ``model`` resumes from, its flat weights and optimizer state.

    With no stored version, ``initial()`` becomes version 0. A newest version
    that is unusable is superseded by a copy of the newest usable one (or of
    the initial weights).
    """
    versions = store.versions(model)
    quarantined: list[str] = []
    for record in reversed(versions):
        try:
            _, named = store.get(model, record.version)
            weights = flatten(named, manifest)
            why = unusable(record, weights)
        except Exception as e:  # an unreadable or misshapen version is as unusable
            why = f"unreadable: {type(e).__name__}: {e}"
        if why is None:
            saved = store.server_state(model, record.version)
            state = ServerOptState.from_arrays(saved) if saved is not None else ServerOptState()
            if not quarantined:
                return record, weights, state
            return _supersede(record, weights, state, quarantined, versions, manifest, store,
                              evaluator, now_ms)  # fmt: skip
        quarantined.append(f"v{record.version} ({why})")
        log.error("version.quarantined", model=model, version=record.version, reason=why)
    fresh = initial()
    return _supersede(None, fresh, ServerOptState(), quarantined, versions, manifest, store,
                      evaluator, now_ms, model)  # fmt: skip


def _supersede(
    good: VersionRecord | None,
    weights: np.ndarray,
    state: ServerOptState,
    quarantined: list[str],
    versions: list[VersionRecord],
    manifest: ParamManifest,
    store: ModelStore,
    evaluator: Evaluator,
    now_ms: int,
    model: str = "",
) -> tuple[VersionRecord, np.ndarray, ServerOptState]:
    name = good.model if good is not None else model
    number = versions[-1].version + 1 if versions else 0
    parent = good.version if good is not None else -1
    round_id = good.round_id if good is not None else 0
    nxt = NextVersion(name, number, parent, round_id, now_ms, weights, state, {}, 0, 0)
    note = (
        "initial" if not versions else f"copy of v{parent}; quarantined " + ", ".join(quarantined)
    )
    kept = keep_version(nxt, manifest, store, evaluator, note=note)
    if isinstance(kept, NotKept):
        raise kept.error
    if quarantined:
        log.warning("version.restored", model=name, version=number, parent=parent, note=note)
    return kept.record, weights, state
