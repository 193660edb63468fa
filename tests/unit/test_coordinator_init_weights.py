"""``--init-weights``: a file that is wrong says which file, and what the model expects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flproc.errors import SettingError
from modelzoo import get_spec
from services.coordinator.config import CoordinatorConfig
from services.coordinator.init_weights import initial_weights

pytestmark = pytest.mark.unit

MODEL = "digits_mlp"
EXPECTED = "fc1.weight [64, 32], fc1.bias [32], fc2.weight [32, 10], fc2.bias [10]"


def _config(path: Path) -> CoordinatorConfig:
    return CoordinatorConfig((MODEL,), ("h0",), init_weights={MODEL: path})


def _good() -> dict[str, np.ndarray]:
    return {
        e.name: np.full(e.shape, 0.25, np.float64) for e in get_spec(MODEL).param_manifest().entries
    }


def test_init_weights_from_an_npz_become_version_zero(tmp_path: Path) -> None:
    path = tmp_path / "init.npz"
    np.savez(path, **_good(), extra=np.zeros(2))  # arrays of other names are ignored

    weights = initial_weights(MODEL, _config(path))

    assert list(weights) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert all(w.dtype == np.float32 and np.all(w == 0.25) for w in weights.values())


def test_init_weights_not_an_npz_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.txt"
    path.write_text("fc1.weight = 0.1\n")

    with pytest.raises(SettingError) as caught:
        initial_weights(MODEL, _config(path))

    message = str(caught.value)
    assert message.startswith(f"init_weights[{MODEL}]: {path} is not an .npz file")
    assert "np.savez" in message and "pickled" not in message


def test_init_weights_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.npz"

    with pytest.raises(SettingError, match=f"init_weights\\[{MODEL}\\]: cannot read {path}"):
        initial_weights(MODEL, _config(path))


def test_init_weights_missing_parameter_lists_the_expected_names(tmp_path: Path) -> None:
    path = tmp_path / "init.npz"
    weights = _good()
    del weights["fc2.bias"]
    np.savez(path, **weights)

    with pytest.raises(SettingError) as caught:
        initial_weights(MODEL, _config(path))

    message = str(caught.value)
    assert f"{path} lacks fc2.bias" in message
    assert f"{MODEL} expects {EXPECTED}" in message
    assert "the file holds fc1.weight [64, 32], fc1.bias [32], fc2.weight [32, 10]" in message


def test_init_weights_wrong_shape_and_values_are_named(tmp_path: Path) -> None:
    path = tmp_path / "init.npz"
    weights = _good()
    weights["fc1.weight"] = np.zeros((32, 64))  # transposed, as another framework stores it
    weights["fc2.bias"][3] = np.nan
    np.savez(path, **weights)

    with pytest.raises(SettingError) as caught:
        initial_weights(MODEL, _config(path))

    message = str(caught.value)
    assert "has fc1.weight of shape [32, 64]" in message
    assert "has non-finite values in fc2.bias" in message
    assert f"{MODEL} expects {EXPECTED}" in message
