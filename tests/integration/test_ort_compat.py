"""The ORT training package quirks are contained in modelzoo.ort_compat."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from modelzoo import ort_compat


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_ort_compat_loads_training_api_without_torch() -> None:
    api = ort_compat.load_training_api()
    art = ort_compat.load_artifacts_module()
    assert {"CheckpointState", "Module", "Optimizer"} <= set(dir(api))
    assert callable(art.generate_artifacts)
    assert "torch" not in sys.modules


def test_ort_compat_captures_native_stderr() -> None:
    with ort_compat.captured_native_stderr() as captured:
        os.write(2, b"native chatter\n")
    assert captured == ["native chatter\n"]
