"""Pure parts of training: task hyper-parameter validation and update clipping."""

from __future__ import annotations

import numpy as np
import pytest

from device_sdk.training import TrainConfig, clip_to_norm

pytestmark = pytest.mark.unit


def test_clip_to_norm_scales_long_updates_to_the_bound() -> None:
    update = np.array([3.0, 4.0], np.float32)
    clipped, norm, was_clipped = clip_to_norm(update, 1.0)
    assert (norm, was_clipped) == (5.0, True)
    np.testing.assert_allclose(clipped, [0.6, 0.8], rtol=1e-6)
    assert clipped.dtype == np.float32


@pytest.mark.parametrize("bound", [None, 5.0, 10.0])
def test_clip_to_norm_leaves_short_updates_alone(bound: float | None) -> None:
    update = np.array([3.0, 4.0], np.float32)
    clipped, norm, was_clipped = clip_to_norm(update, bound)
    assert (norm, was_clipped) == (5.0, False)
    np.testing.assert_array_equal(clipped, update)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"max_steps": 0},
        {"learning_rate": 0.0},
        {"learning_rate": float("nan")},
        {"clip_norm": -1.0},
    ],
)
def test_train_config_rejects_nonsense_task_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)  # type: ignore[arg-type]
