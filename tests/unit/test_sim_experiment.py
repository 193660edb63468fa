"""make_experiment with a partition spec file: every error names the file, no model is left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flsim.errors import ExperimentError
from flsim.experiment import make_experiment

pytestmark = pytest.mark.unit

DIGITS_SPEC = {
    "dataset": "digits",
    "test": [0, 1, 2],
    "devices": [
        {"hospital": "h0", "device": "h0-d0", "train": [3, 4, 5]},
        {"hospital": "h1", "device": "h1-d0", "train": [6, 7]},
    ],
}


def _experiment(spec: Path, models: tuple[str, ...] = ("digits_mlp", "breast_cancer")) -> object:
    return make_experiment(
        models, hospitals=3, devices_per_hospital=2, alpha=0.5, seed=0, partition_file=spec
    )


def _refusal(spec: Path, models: tuple[str, ...] = ("digits_mlp", "breast_cancer")) -> str:
    with pytest.raises(ExperimentError) as caught:
        _experiment(spec, models)
    return str(caught.value)


def test_experiment_malformed_json_names_the_file_and_the_json_problem(tmp_path: Path) -> None:
    spec = tmp_path / "split.json"
    spec.write_text('{"dataset": "digits",\n "test": [0,]}')
    message = _refusal(spec)
    assert message.startswith(f"{spec}: not valid JSON: ")
    assert "line 2 column" in message


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ([1, 2], "<root>: must be an object"),
        ({**DIGITS_SPEC, "test": [0, 3]}, "devices[0].train[0]: row 3 is also in test"),
        ({**DIGITS_SPEC, "devices": []}, "devices: must be a non-empty list"),
    ],
)
def test_experiment_invalid_spec_names_the_file_and_the_field(
    tmp_path: Path, content: object, field: str
) -> None:
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps(content))
    assert _refusal(spec).startswith(f"{spec}: {field}")


def test_experiment_spec_fitting_only_some_models_is_refused_naming_them(tmp_path: Path) -> None:
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps(DIGITS_SPEC))
    message = _refusal(spec)
    assert message.startswith(f"{spec}: a split of the 'digits' data set fits digits_mlp but not")
    assert "breast_cancer (trains on 'breast_cancer')" in message
    assert "--models digits_mlp" in message


def test_experiment_spec_of_a_data_set_no_model_uses_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps({**DIGITS_SPEC, "dataset": "breast_cancer"}))
    message = _refusal(spec, ("digits_mlp",))
    assert message.startswith(f"{spec}: a split of the 'breast_cancer' data set, which none")


def test_experiment_spec_is_every_models_split_when_all_train_on_its_data_set(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps(DIGITS_SPEC))
    experiment = make_experiment(
        ("digits_mlp", "digits_cnn"),
        hospitals=3,
        devices_per_hospital=10,
        alpha=0.5,
        seed=0,
        partition_file=spec,
    )
    for model in ("digits_mlp", "digits_cnn"):
        assert experiment.partitions[model].to_json_dict() == DIGITS_SPEC
    assert experiment.population() == {"h0": 1, "h1": 1}
