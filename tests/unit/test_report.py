"""The demo's report: busy time, per-round rows, the summary table and the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flctl.report import (
    accuracy_figure,
    build_report,
    busy_seconds,
    summary_table,
    write_outputs,
)
from services.coordinator.summary import RoundSummary

pytestmark = pytest.mark.unit


def test_busy_seconds_merges_overlapping_spans_and_clips_to_the_round() -> None:
    spans = [(0, 10), (5, 20), (30, 40)]
    assert busy_seconds(spans, 0, 100) == pytest.approx(0.030)
    assert busy_seconds(spans, 8, 35) == pytest.approx(0.017)  # 8..20 and 30..35
    assert busy_seconds([], 0, 10) == 0


def _summary(round_id: int, accuracy: float) -> RoundSummary:
    return RoundSummary(
        "digits_mlp", round_id, round_id - 1, "done", "all hospitals reported", round_id,
        opened_at_ms=1_000, closed_at_ms=1_500, goals={"h0": 10, "h1": 10},
        admitted={"h0": 10, "h1": 9}, reported={"h0": 10, "h1": 7}, rejected={"h1": 1},
        examples=300, train_seconds=0.3, train_loss=0.7,
        metrics={"accuracy": accuracy, "loss": 1.0},
    )  # fmt: skip


def test_report_rows_count_dropped_devices_and_overhead(tmp_path: Path) -> None:
    history = {"digits_mlp": [_summary(1, 0.5), _summary(2, 0.6)]}
    report = build_report(history, {"seed": 0}, spans=[(1_000, 1_400)])
    row = report["models"]["digits_mlp"][1]
    assert row["per_hospital"]["h1"] == {
        "goal": 10, "admitted": 9, "reported": 7, "rejected": 1, "dropped": 1
    }  # fmt: skip
    assert row["wall_seconds"] == 0.5 and row["device_busy_seconds"] == 0.4
    assert row["overhead_seconds"] == pytest.approx(0.1)
    table = summary_table(report)
    assert "digits_mlp" in table and "0.6000" in table
    paths = write_outputs(report, tmp_path / "out")
    assert json.loads(paths[0].read_text())["models"]["digits_mlp"][0]["test_accuracy"] == 0.5
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_accuracy_plot_of_a_short_run_has_whole_round_ticks() -> None:
    # Prepare: two rounds, where matplotlib's default locator would put ticks at 1.2, 1.4, ...
    history = {"digits_mlp": [_summary(1, 0.5), _summary(2, 0.6)]}
    report = build_report(history, {"seed": 0})

    # Execute
    fig = accuracy_figure(report)

    # Assert
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
