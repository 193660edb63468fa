"""The one place that knows the quirks of the ONNX Runtime *training* package.

Why this module exists: ``onnxruntime-training-cpu`` stopped at 1.19.2 and has
three rough edges we work around here, so no other module has to care.

1. ``import onnxruntime.training`` imports ``onnxruntime.training.optim``, which
   imports torch. We do not ship torch (hundreds of MB on a phone or a data hub)
   and we do not need it: the parts we use, ``artifacts`` (generate_artifacts)
   and ``api`` (CheckpointState, Module, Optimizer), never touch torch. Putting a
   placeholder module under that name in ``sys.modules`` before the first import
   makes the package import cleanly. If torch *is* installed we leave it alone.
2. ORT 1.19 rejects models whose IR version is newer than 10; onnx >= 1.17
   writes IR version 11+ by default (pinned in pyproject.toml: onnx<1.17).
   Builders set ``MAX_IR_VERSION`` explicitly so an onnx upgrade fails loudly in
   ``check_ir_version`` instead of deep inside ORT.
3. Gradient-graph construction in ``generate_artifacts`` logs every graph
   transformer at INFO level from C++ straight to file descriptor 2, ignoring
   the Python-side logger severity. ``captured_native_stderr`` swallows that
   chatter and hands it back so a failure can still show it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
import types
from collections.abc import Iterator
from typing import Any

import onnx

from modelzoo.errors import ArtifactGenerationError

MAX_IR_VERSION = 10
_OPTIM_MODULE = "onnxruntime.training.optim"


def _install_torch_free_optim_placeholder() -> None:
    """Let ``onnxruntime.training`` import without torch (see module docstring, point 1)."""
    if _OPTIM_MODULE in sys.modules or importlib.util.find_spec("torch") is not None:
        return
    placeholder = types.ModuleType(_OPTIM_MODULE)
    placeholder.__doc__ = "Placeholder: the torch-based optimizers are not available."
    sys.modules[_OPTIM_MODULE] = placeholder


def load_training_api() -> Any:
    """Return ``onnxruntime.training.api`` (CheckpointState, Module, Optimizer)."""
    _install_torch_free_optim_placeholder()
    return importlib.import_module("onnxruntime.training.api")


def load_artifacts_module() -> Any:
    """Return ``onnxruntime.training.artifacts`` (generate_artifacts, LossType, OptimType)."""
    _install_torch_free_optim_placeholder()
    return importlib.import_module("onnxruntime.training.artifacts")


def quiet_native_warnings() -> None:
    """Show only ORT errors on stderr, for processes that train many sessions.

    ORT 1.19's optimizer graphs trip a harmless shape-merge warning
    ("Error merging shape info for output 'onnx::update_completed'") on every
    training session; a device population prints it thousands of times. This
    changes ORT's process-wide default logger, so only entry points (the demo,
    ``flctl devices``) call it, never library code.
    """
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)


def check_ir_version(model: onnx.ModelProto) -> None:
    """Raise ArtifactGenerationError when ORT training 1.19 cannot load this IR version."""
    if model.ir_version > MAX_IR_VERSION:
        raise ArtifactGenerationError(
            f"model IR version {model.ir_version} > {MAX_IR_VERSION}: ORT training 1.19 "
            f"rejects it; build with onnx 1.16 or set model.ir_version = {MAX_IR_VERSION}"
        )


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Redirect fd 2 for the block; the yielded list receives what native code wrote."""
    sink: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", errors="replace"))
