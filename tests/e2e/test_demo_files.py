"""What a demo run leaves on disk: nothing in the temp folder, its work under --out if asked."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from flctl.demo import DemoOptions, run_demo
from services.coordinator.config import RoundSettings

pytestmark = pytest.mark.e2e


def _small(**over: Any) -> DemoOptions:
    rounds = RoundSettings(rounds=1, round_timeout_ms=10_000, selection_window_ms=500)
    return DemoOptions(
        models=("breast_cancer",), hospitals=1, devices=2, selectors=1, rounds=rounds, **over
    )


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp folder, one of the test's own, so other processes' files do not count."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


async def test_demo_without_out_leaves_nothing_in_the_temp_folder(temp: Path) -> None:
    report = await run_demo(_small(), progress_stream=None)

    # The run trained (so it did write artifacts somewhere), and left nothing.
    assert [r["outcome"] for r in report["models"]["breast_cancer"]] == ["done"]
    assert list(temp.iterdir()) == []


async def test_demo_with_out_keeps_its_work_beside_the_registry(temp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    await run_demo(_small(out=out), progress_stream=None)

    assert (out / "work" / "artifacts" / "breast_cancer").is_dir()
    assert any((out / "models").glob("*/v1.json"))
    assert list(temp.iterdir()) == []
