"""One ONNX Runtime training session, and the one place ORT's exceptions become ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from device_sdk.errors import ArtifactError, SdkError
from modelzoo import ort_compat
from modelzoo.artifacts import CHECKPOINT, EVAL_MODEL, TRAINING_MODEL, optimizer_file
from modelzoo.params import ParamManifest, flatten, unflatten

F32 = NDArray[np.float32]


@contextlib.contextmanager
def ort_errors(what: str) -> Iterator[None]:
    """Translate ORT's exceptions (RuntimeError and friends) into ArtifactError."""
    try:
        yield
    except SdkError:
        raise
    except Exception as exc:  # ORT raises RuntimeError, Fail, InvalidArgument, ...
        raise ArtifactError(f"{what}: {str(exc).strip()[:300]}") from exc


class OrtSession:
    """One ORT training session (state, module, optimizer); weights are loaded per run."""

    def __init__(self, d: Path, options: ort.SessionOptions, optimizer: str | None) -> None:
        api = ort_compat.load_training_api()
        with ort_errors("cannot load training artifacts"):
            self.state = api.CheckpointState.load_checkpoint(str(d / CHECKPOINT))
            self.module = api.Module(
                str(d / TRAINING_MODEL),
                self.state,
                str(d / EVAL_MODEL),
                session_options=options,
            )
            self.optimizer = (
                api.Optimizer(str(d / optimizer_file(optimizer)), self.module)
                if optimizer is not None
                else None
            )

    def load(self, weights: F32, manifest: ParamManifest) -> None:
        """Write ``weights`` into the session's parameters (only once a Module owns the state)."""
        with ort_errors("cannot write parameters"):
            for name, value in unflatten(weights, manifest).items():
                self.state.parameters[name].data = value

    def weights(self, manifest: ParamManifest) -> F32:
        """Current parameters of the session as a flat vector."""
        with ort_errors("cannot read parameters"):
            return flatten({n: self.state.parameters[n].data for n in manifest.names}, manifest)
