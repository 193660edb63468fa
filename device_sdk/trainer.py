"""Local training, evaluation and prediction over ONNX Runtime (the trainer adapter).

The trainer holds the *global* weights of one model. ``train`` loads them into a
training session borrowed from a pool (:mod:`device_sdk.sessions`; SGD keeps no
state between rounds, AdamW sessions are never reused, so optimizer state never
leaks across rounds), returns the update local - global, and leaves the global
weights unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import structlog
from numpy.typing import NDArray

from device_sdk.artifacts import read_verified_info
from device_sdk.errors import (
    ArtifactError,
    DataError,
    FeatureError,
    LabelError,
    TrainingDivergedError,
    WeightsError,
)
from device_sdk.ort_session import OrtSession, ort_errors
from device_sdk.sessions import SessionKey, SessionPool, shared_pool
from device_sdk.training import EvalResult, TrainConfig, TrainResult, clip_to_norm
from modelzoo import ort_compat
from modelzoo.artifacts import (
    CHECKPOINT,
    INFERENCE_MODEL,
    ArtifactInfo,
)
from modelzoo.data import shuffled_batches
from modelzoo.errors import ManifestError
from modelzoo.graphs import with_weights
from modelzoo.params import ParamManifest, flatten, unflatten

__all__ = ["EvalResult", "TrainConfig", "TrainResult", "Trainer", "clip_to_norm"]

log = structlog.get_logger(__name__)
F32 = NDArray[np.float32]


class Trainer:
    """Train, evaluate and predict with one model's ORT artifacts."""

    def __init__(
        self,
        artifact_dir: Path,
        *,
        clock: Callable[[], float] = time.perf_counter,
        threads: int | None = None,
        sessions: SessionPool[Any] | None = None,
    ) -> None:
        """Open verified artifacts; ``threads`` caps ORT intra-op threads (None: ORT default).

        Training sessions come from ``sessions`` (None: the process's shared pool),
        so a new round loads its weights into a session instead of building one.
        """
        self.artifact_dir = Path(artifact_dir)
        self._threads = threads
        self._clock = clock
        self._info = read_verified_info(self.artifact_dir)
        self._log = log.bind(model=self._info.model_name)
        api = ort_compat.load_training_api()
        with ort_errors("cannot load checkpoint"):
            state = api.CheckpointState.load_checkpoint(str(self.artifact_dir / CHECKPOINT))
            params = {n: np.asarray(p.data) for n, p in state.parameters}
        try:
            self._global = flatten(params, self._info.manifest)
        except ManifestError as exc:
            raise ArtifactError(f"checkpoint does not match artifacts.json: {exc}") from exc
        self._sessions = sessions if sessions is not None else shared_pool()
        digest = hashlib.sha256(json.dumps(self._info.sha256, sort_keys=True).encode()).hexdigest()
        self._digest = f"{self._info.model_name}:{digest}"
        self._inference: ort.InferenceSession | None = None

    def session_options(self) -> ort.SessionOptions:
        """ORT session options for every session this trainer opens."""
        options = ort.SessionOptions()
        if self._threads is not None:
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
        return options

    @property
    def info(self) -> ArtifactInfo:
        """What artifacts.json says about the model."""
        return self._info

    @property
    def manifest(self) -> ParamManifest:
        """Order and shapes of the flat weight vector this model expects."""
        return self._info.manifest

    def weights(self) -> F32:
        """A copy of the current global weights (flat float32)."""
        return self._global.copy()

    def load_weights(self, flat: NDArray[Any], manifest: ParamManifest | None = None) -> None:
        """Replace the global weights; WeightsError on wrong length, shape or values."""
        vec = np.asarray(flat)
        if manifest is not None and manifest != self.manifest:
            raise WeightsError(
                f"weights manifest {manifest.to_list()} differs from the model's "
                f"{self.manifest.to_list()}"
            )
        if vec.ndim != 1 or vec.shape[0] != self.manifest.total_size:
            raise WeightsError(
                f"weights have shape {vec.shape}, model needs ({self.manifest.total_size},)"
            )
        if not np.issubdtype(vec.dtype, np.floating):
            raise WeightsError(f"weights must be floating point, got {vec.dtype}")
        if not np.all(np.isfinite(vec)):
            raise WeightsError("weights contain NaN or inf")
        self._global = vec.astype(np.float32, copy=True)
        self._inference = None

    def _features(self, x: NDArray[Any]) -> F32:
        arr = np.asarray(x)
        width = int(np.prod(self._info.input_shape))
        if arr.ndim != 2 or arr.shape[1] != width:
            raise FeatureError(f"features have shape {arr.shape}, model needs (n, {width})")
        if not np.all(np.isfinite(arr)):
            raise FeatureError("features contain NaN or inf")
        return arr.astype(np.float32).reshape((arr.shape[0], *self._info.input_shape))

    def _labels(self, y: NDArray[Any], n: int) -> NDArray[np.int64]:
        arr = np.asarray(y)
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise LabelError(f"labels must be {n} integers, got {arr.dtype} {arr.shape}")
        if n and (arr.min() < 0 or arr.max() >= self._info.classes):
            raise LabelError(f"labels outside [0, {self._info.classes})")
        return arr.astype(np.int64)

    def train(
        self,
        x: NDArray[Any],
        y: NDArray[Any],
        config: TrainConfig,
        rng: np.random.Generator,
        *,
        evaluate_first: bool = False,
    ) -> TrainResult:
        """Train from the global weights; return the (optionally clipped) update.

        With ``evaluate_first`` the global weights are first scored on the same
        examples in the same session (``TrainResult.base_eval``): federated
        evaluation for the price of one forward pass, no second session.

        Raises FeatureError/LabelError/DataError on unusable examples,
        TrainingDivergedError on NaN/inf, ArtifactError if ORT rejects the artifacts.
        """
        feats = self._features(x)
        labels = self._labels(y, feats.shape[0])
        n = feats.shape[0]
        if n == 0:
            raise DataError("no labelled examples to train on")
        if config.optimizer not in self._info.optimizers:
            raise ArtifactError(f"artifacts have no optimizer {config.optimizer!r}")
        started = self._clock()
        with self._session(config.optimizer) as session:
            return self._train(session, feats, labels, config, rng, evaluate_first, started)

    @contextlib.contextmanager
    def _session(self, optimizer: str | None) -> Iterator[OrtSession]:
        """A pooled session for ``optimizer`` holding the global weights."""
        key = SessionKey(self._info.model_name, self._digest, optimizer, self._threads)
        with self._sessions.borrow(
            key, lambda: OrtSession(self.artifact_dir, self.session_options(), optimizer)
        ) as session:
            session.load(self._global, self.manifest)
            yield session

    def _train(
        self,
        session: OrtSession,
        feats: F32,
        labels: NDArray[np.int64],
        config: TrainConfig,
        rng: np.random.Generator,
        evaluate_first: bool,
        started: float,
    ) -> TrainResult:
        n = feats.shape[0]
        assert session.optimizer is not None
        session.optimizer.set_learning_rate(config.learning_rate)
        base_eval = self._score(session.module, feats, labels) if evaluate_first else None
        session.module.train()
        seen = np.zeros(n, dtype=bool)
        loss_sum, steps, examples = 0.0, 0, 0
        limit = config.max_steps if config.max_steps is not None else float("inf")
        for _epoch in range(config.epochs):
            for idx in shuffled_batches(n, config.batch_size, rng):
                if steps >= limit:
                    break
                with ort_errors("training step failed"):
                    loss = float(session.module(feats[idx], labels[idx])[0])
                    if not np.isfinite(loss):
                        raise TrainingDivergedError(f"loss is {loss} at step {steps}", steps)
                    session.optimizer.step()
                    session.module.lazy_reset_grad()
                steps += 1
                seen[idx] = True
                loss_sum += loss * len(idx)
                examples += len(idx)
        local = session.weights(self.manifest)
        if not np.all(np.isfinite(local)):
            raise TrainingDivergedError(f"weights not finite after {steps} steps", steps)
        update, norm, clipped = clip_to_norm(local - self._global, config.clip_norm)
        result = TrainResult(
            update=update,
            num_examples=int(seen.sum()),
            num_steps=steps,
            mean_loss=loss_sum / examples,
            train_seconds=self._clock() - started,
            update_norm=norm,
            clipped=clipped,
            base_eval=base_eval,
        )
        self._log.info(
            "training.finished",
            steps=steps,
            examples=result.num_examples,
            loss=result.mean_loss,
            seconds=result.train_seconds,
            update_norm=norm,
            clipped=clipped,
        )
        return result

    def evaluate(self, x: NDArray[Any], y: NDArray[Any], batch_size: int = 256) -> EvalResult:
        """Mean cross-entropy loss and accuracy of the global weights via the eval model."""
        feats = self._features(x)
        labels = self._labels(y, feats.shape[0])
        n = feats.shape[0]
        if n == 0:
            raise DataError("no labelled examples to evaluate on")
        with self._session(None) as session:
            return self._score(session.module, feats, labels, batch_size)

    @staticmethod
    def _score(
        module: Any, feats: F32, labels: NDArray[np.int64], batch_size: int = 256
    ) -> EvalResult:
        """Loss and accuracy of the weights ``module`` holds, through its eval graph."""
        n = feats.shape[0]
        loss_sum, correct = 0.0, 0
        with ort_errors("evaluation failed"):
            module.eval()
            for start in range(0, n, batch_size):
                xb, yb = feats[start : start + batch_size], labels[start : start + batch_size]
                loss, logits = module(xb, yb)
                loss_sum += float(loss) * len(yb)
                correct += int((np.asarray(logits).argmax(axis=1) == yb).sum())
        return EvalResult(loss=loss_sum / n, accuracy=correct / n, num_examples=n)

    def _inference_session(self) -> ort.InferenceSession:
        if self._inference is None:
            with ort_errors("cannot load inference model"):
                model = with_weights(
                    onnx.load(str(self.artifact_dir / INFERENCE_MODEL)),
                    unflatten(self._global, self.manifest),
                )
                self._inference = ort.InferenceSession(
                    model.SerializeToString(),
                    sess_options=self.session_options(),
                    providers=["CPUExecutionProvider"],
                )
        return self._inference

    def predict_proba(self, x: NDArray[Any]) -> F32:
        """Class probabilities (n, classes) from the global weights, plain ORT inference."""
        feats = self._features(x)
        session = self._inference_session()
        with ort_errors("inference failed"):
            (raw,) = session.run(None, {session.get_inputs()[0].name: feats})
        logits = np.asarray(raw, dtype=np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        result: F32 = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
        return result

    def predict(self, x: NDArray[Any]) -> NDArray[np.int64]:
        """Predicted class of every row of ``x``."""
        classes: NDArray[np.int64] = self.predict_proba(x).argmax(axis=1).astype(np.int64)
        return classes
