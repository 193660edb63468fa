"""Poisoning drill: 10% of the devices send boosted, reversed updates; a robust rule holds.

The smallest federation that still means something: breast_cancer over 3
hospitals x 10 devices (3 attackers), every role real, on the in-memory buses.
The attackers are valid devices; their updates sit just inside the default norm
bound, so only the aggregate rule stands in the way. The FedAvg run shows the
attack bites in this very set-up (bench/poisoning.py prints every rule and attack).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flctl.demo import DemoOptions, run_demo
from services.coordinator.config import RoundSettings

pytestmark = pytest.mark.e2e

MODEL = "breast_cancer"


async def _final_accuracy(tmp_path: Path, name: str, rule: str, attackers: float) -> float:
    settings = RoundSettings(rounds=6, round_timeout_ms=10_000, selection_window_ms=2_000,
                             server_optimizer="fedadam", aggregation=rule)  # fmt: skip
    opts = DemoOptions(models=(MODEL,), rounds=settings, attackers=attackers, attack="boost",
                       work_dir=tmp_path / name)  # fmt: skip
    report: dict[str, Any] = await run_demo(opts, progress_stream=None)
    rows = report["models"][MODEL]
    assert [r["outcome"] for r in rows] == ["done"] * 6, [r["reason"] for r in rows]
    assert report["run"]["poisoned_uploads"] == (18 if attackers else 0)
    return float(rows[-1]["test_accuracy"])


async def test_median_keeps_an_attacked_run_within_two_points_of_clean(tmp_path: Path) -> None:
    clean = await _final_accuracy(tmp_path, "clean", "median", 0.0)
    attacked = await _final_accuracy(tmp_path, "attacked", "median", 0.1)
    assert attacked >= clean - 0.02, (attacked, clean)
    fedavg = await _final_accuracy(tmp_path, "fedavg", "fedavg", 0.1)
    assert fedavg < clean - 0.1, (fedavg, clean)  # the attack is real: without the rule it wins
