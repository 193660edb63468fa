"""Whole federated trainings, each scenario on the in-memory buses and on real brokers.

Every role is the real one (coordinator, two selector replicas, one aggregator
per hospital, 30 SDK devices training with ONNX Runtime), wired by ``flctl demo``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flctl.demo import DemoOptions, run_demo
from services.coordinator.config import RoundSettings
from tests.e2e.conftest import Plane

pytestmark = pytest.mark.e2e


async def _run(plane: Plane, tmp_path: Path, **over: Any) -> dict[str, Any]:
    opts = DemoOptions(
        brokers=plane.brokers,
        mqtt_url=plane.mqtt_url,
        kafka_bootstrap=plane.kafka_bootstrap,
        work_dir=tmp_path / "work",
        **over,
    )
    return await run_demo(opts, progress_stream=None)


def _rows(report: dict[str, Any], model: str) -> list[dict[str, Any]]:
    return report["models"][model]


async def test_two_models_train_and_accuracy_rises(plane: Plane, tmp_path: Path) -> None:
    settings = RoundSettings(rounds=5, round_timeout_ms=20_000, selection_window_ms=5_000)
    report = await _run(plane, tmp_path, models=("digits_mlp", "breast_cancer"), rounds=settings)
    for model in ("digits_mlp", "breast_cancer"):
        rows = _rows(report, model)
        assert [r["outcome"] for r in rows] == ["done"] * 5, [r["reason"] for r in rows]
        for r in rows:  # every one of the 30 devices took part in every round
            assert sum(h["reported"] for h in r["per_hospital"].values()) == 30
        accuracy = [r["test_accuracy"] for r in rows]
        assert accuracy[-1] > accuracy[0] + 0.05, accuracy
        assert [r["new_version"] for r in rows] == [1, 2, 3, 4, 5]


async def test_rounds_complete_despite_dropouts(plane: Plane, tmp_path: Path) -> None:
    settings = RoundSettings(rounds=3, fraction=0.5, round_timeout_ms=4_000,
                             selection_window_ms=2_000, close_grace_ms=500)  # fmt: skip
    report = await _run(plane, tmp_path, models=("breast_cancer",), rounds=settings, dropout=0.3)
    rows = _rows(report, "breast_cancer")
    assert [r["outcome"] for r in rows] == ["done"] * 3, [r["reason"] for r in rows]
    admitted = sum(h["admitted"] for r in rows for h in r["per_hospital"].values())
    reported = sum(h["reported"] for r in rows for h in r["per_hospital"].values())
    dropped = sum(h["dropped"] for r in rows for h in r["per_hospital"].values())
    # Over-selection: more devices admitted than the goal of 5 per hospital per round,
    # so the rounds still have updates from every hospital after the dropouts.
    assert admitted > 3 * 3 * 5 and reported + dropped == admitted
    # Dropped counts every admitted device whose update did not make it into the round:
    # the ones that vanished, and the surplus that over-selection admitted.
    assert dropped >= report["run"]["devices"]["dropouts"] > 0


async def test_rounds_close_by_deadline_without_a_hospital(plane: Plane, tmp_path: Path) -> None:
    settings = RoundSettings(rounds=2, round_timeout_ms=3_000, selection_window_ms=1_500,
                             close_grace_ms=500)  # fmt: skip
    report = await _run(
        plane, tmp_path, models=("breast_cancer",), rounds=settings, stop_hospitals=("h2",)
    )
    rows = _rows(report, "breast_cancer")
    assert [r["outcome"] for r in rows] == ["done", "done"], [r["reason"] for r in rows]
    for r in rows:
        assert "deadline" in r["reason"]
        assert r["per_hospital"]["h2"]["reported"] == 0
        assert r["per_hospital"]["h0"]["reported"] == 10 == r["per_hospital"]["h1"]["reported"]
        assert 3.0 <= r["wall_seconds"] < 3.0 + 0.5 + 2.0  # waited for the deadline, no longer
