"""flctl demo refuses bad input with exit code 2 and a message naming the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flctl.main import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "nope"], "no zoo model named 'nope'"),
        (["--rounds", "0"], "--rounds >= 1"),
        (["--dropout", "2"], "dropout must be in [0, 1]"),
        (["--server-optimizer", "adam"], "unknown server optimizer 'adam'"),
        (["--partition", "/nonexistent/split.json"], "No such file"),
        (["--mqtt", "mqtt://127.0.0.1:1"], "external brokers need both --mqtt and --kafka"),
    ],
)
def test_demo_bad_input_exits_2_naming_it(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *args]) == 2
    assert message in capsys.readouterr().err


def test_demo_refuses_to_mix_registries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models" / "digits_mlp").mkdir(parents=True)
    (tmp_path / "models" / "digits_mlp" / "v3.json").write_text("{}")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "already holds a model registry" in capsys.readouterr().err


ONE_DEVICE = '"devices": [{"hospital": "h0", "device": "d0", "train": [%d]}]'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"dataset": "digits", "test": [0], %s}' % (ONE_DEVICE % 0), "devices[0].train[0]"),
        ('{"dataset": "digits", "test": [0,]}', "not valid JSON: "),
        (
            '{"dataset": "digits", "test": [0], %s}' % (ONE_DEVICE % 1),
            "fits digits_mlp but not breast_cancer",
        ),
    ],
    ids=["row-twice", "malformed-json", "digits-split-with-both-default-models"],
)
def test_demo_bad_partition_exits_2_naming_the_file_and_the_problem(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "split.json"
    spec.write_text(content)
    assert main(["demo", "--partition", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flctl demo: {spec}: ") and message in err


def test_demo_init_weights_not_npz_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights")
    assert main(["demo", "--init-weights", str(notes)]) == 2
    err = capsys.readouterr().err
    assert f"{notes} is not an .npz file" in err
    assert "pickled" not in err


def test_demo_init_weights_of_no_model_lists_expected_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.npz"
    np.savez(weights, a=np.zeros(3, np.float32))
    assert main(["demo", "--init-weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "digits_mlp: fc1.weight [64, 32], fc1.bias [32]" in err
    assert "breast_cancer: fc1.weight [30, 16]" in err
