"""A model's round terms and the wire messages the coordinator publishes about them.

Plain functions of settings and state: how many devices each hospital is
asked for, the core's :class:`RoundTerms`, and their wire forms
(``schemas.RoundPlan``, ``schemas.ModelVersion``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from flcore.admission import admission_probability
from flcore.rounds import RoundTerms
from flcore.timing import RoundTiming, round_timing
from flstore import VersionRecord
from modelzoo import ParamManifest
from schemas import ModelVersion, RoundPlan, Tensors, TensorSpec
from services.coordinator.config import RoundSettings


def round_goals(
    expected: Mapping[str, int], settings: RoundSettings
) -> tuple[dict[str, int], float]:
    """Updates wanted per hospital, and the admission probability that over-selects for them.

    ``expected`` is the devices each hospital is expected to have (known
    population or devices seen checking in, whichever is larger).
    """
    goals = {h: max(1, math.ceil(settings.fraction * n)) for h, n in expected.items()}
    total_expected = sum(expected.values())
    if total_expected == 0:
        return goals, 1.0
    wanted = sum(math.ceil(g * settings.over_selection) for g in goals.values())
    return goals, admission_probability(wanted, total_expected, over_selection=1.0)


def timing(
    expected: Mapping[str, int],
    goals: Mapping[str, int],
    settings: RoundSettings,
    checkins_per_s: float | None = None,
    *,
    broadcast_bytes: int = 0,
    update_bytes: int = 0,
) -> RoundTiming:
    """Selection window and timeout for a round: the settings, stretched to the population.

    ``broadcast_bytes``: what every device downloads before it sees this round's
    plan (a new version, artifacts); ``update_bytes``: the size of one update.
    """
    return round_timing(
        expected_devices=sum(expected.values()),
        wanted_updates=sum(math.ceil(g * settings.over_selection) for g in goals.values()),
        min_window_ms=settings.selection_window_ms,
        min_timeout_ms=settings.round_timeout_ms,
        checkins_per_s=checkins_per_s,
        broadcast_bytes=broadcast_bytes,
        update_bytes=update_bytes,
    )


def round_terms(
    model: str,
    round_id: int,
    base_version: int,
    goals: Mapping[str, int],
    settings: RoundSettings,
    now_ms: int,
    timing: RoundTiming | None = None,
    expected: Mapping[str, int] | None = None,
) -> RoundTerms:
    """The terms of a round opened at ``now_ms``: goals, deadlines and quorum.

    ``timing`` (see :func:`timing`) defaults to the settings' window and timeout;
    ``expected`` (devices per hospital) caps the admission targets.
    """
    if timing is None:
        timing = RoundTiming(settings.selection_window_ms, settings.round_timeout_ms)
    return RoundTerms(
        model=model,
        round_id=round_id,
        base_version=base_version,
        goals=goals,
        selection_deadline_ms=now_ms + timing.selection_window_ms,
        deadline_ms=now_ms + timing.round_timeout_ms,
        close_grace_ms=settings.close_grace_ms,
        over_selection=settings.over_selection,
        min_hospital_fraction=settings.min_hospital_fraction,
        min_update_fraction=settings.min_update_fraction,
        expected=dict(expected or {}),
    )


def restored_terms(plan: RoundPlan, settings: RoundSettings) -> RoundTerms:
    """The terms of a round a previous coordinator opened, from its published plan.

    Raises :class:`flcore.errors.InvalidParameter` for a plan no round could have.
    """
    goals = dict(zip(plan.hospitals, plan.targets, strict=True))
    return RoundTerms(
        model=plan.model,
        round_id=plan.round_id,
        base_version=plan.base_version,
        goals=goals,
        selection_deadline_ms=min(
            plan.opened_at_ms + settings.selection_window_ms, plan.deadline_ms
        ),
        deadline_ms=plan.deadline_ms,
        close_grace_ms=settings.close_grace_ms,
        over_selection=plan.over_selection,
        min_hospital_fraction=settings.min_hospital_fraction,
        min_update_fraction=plan.min_fraction,
    )


def wire_plan(
    terms: RoundTerms,
    settings: RoundSettings,
    state: str,
    probability: float,
    opened_at_ms: int,
    reason: str = "",
) -> RoundPlan:
    """The round plan message: the terms with the round's hyper-parameters, in ``state``."""
    hospitals = tuple(sorted(terms.goals))
    return RoundPlan(
        model=terms.model,
        round_id=terms.round_id,
        base_version=terms.base_version,
        state=state,
        local_epochs=settings.local_epochs,
        max_steps=settings.max_steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        clip_norm=settings.clip_norm,
        noise_multiplier=settings.noise_multiplier,
        hospitals=hospitals,
        targets=tuple(terms.goals[h] for h in hospitals),
        admission_probability=probability,
        over_selection=terms.over_selection,
        min_fraction=terms.min_update_fraction,
        opened_at_ms=opened_at_ms,
        deadline_ms=terms.deadline_ms,
        reason=reason,
        aggregation=settings.aggregation,
        trim_fraction=settings.trim_fraction if settings.aggregation == "trimmed_mean" else 0.0,
    )


def tensor_specs(manifest: ParamManifest) -> tuple[TensorSpec, ...]:
    """The wire's description of a model's parameters."""
    return tuple(TensorSpec(e.name, tuple(e.shape)) for e in manifest.entries)


def version_message(
    record: VersionRecord, weights: np.ndarray, manifest: ParamManifest, artifact_digest: str
) -> ModelVersion:
    """A stored version as the wire message (metrics sorted by name)."""
    names = tuple(sorted(record.metrics))
    return ModelVersion(
        model=record.model,
        version=record.version,
        parent_version=record.parent_version,
        round_id=record.round_id,
        created_at_ms=record.created_at_ms,
        metric_names=names,
        metric_values=tuple(float(record.metrics[n]) for n in names),
        artifact_digest=artifact_digest,
        tensors=Tensors(tensor_specs(manifest), weights),
    )
