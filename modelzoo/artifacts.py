"""Generate ONNX Runtime Training artifacts from an ONNX model (run by the coordinator).

An artifact directory holds::

    training_model.onnx   forward + cross-entropy loss + gradients; outputs (loss, logits)
    eval_model.onnx       forward + loss; outputs (loss, logits)
    optimizer_sgd.onnx    plain SGD (w -= lr * g)
    optimizer_adamw.onnx  AdamW (ORT defaults)
    checkpoint            initial parameters
    inference_model.onnx  the forward graph, for plain onnxruntime.InferenceSession
    artifacts.json        ArtifactInfo: shapes, classes, manifest, sha256 of every file
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import structlog

from modelzoo import graphs, ort_compat
from modelzoo.errors import ArtifactGenerationError
from modelzoo.params import ParamManifest
from modelzoo.registry import get_spec

log = structlog.get_logger(__name__)

INFO_FILE = "artifacts.json"
TRAINING_MODEL = "training_model.onnx"
EVAL_MODEL = "eval_model.onnx"
CHECKPOINT = "checkpoint"
INFERENCE_MODEL = "inference_model.onnx"
OPTIMIZERS = ("sgd", "adamw")
FORMAT_VERSION = 1


def optimizer_file(optimizer: str) -> str:
    """File name of the optimizer model for ``optimizer`` ("sgd" or "adamw")."""
    return f"optimizer_{optimizer}.onnx"


@dataclass(frozen=True)
class ArtifactInfo:
    """What a device needs to know about an artifact directory (artifacts.json)."""

    model_name: str
    input_shape: tuple[int, ...]
    classes: int
    manifest: ParamManifest
    optimizers: tuple[str, ...]
    sha256: dict[str, str]
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """Serialize to the artifacts.json text."""
        return json.dumps(
            {
                "format_version": self.format_version,
                "model_name": self.model_name,
                "input_shape": list(self.input_shape),
                "classes": self.classes,
                "manifest": self.manifest.to_list(),
                "optimizers": list(self.optimizers),
                "sha256": self.sha256,
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ArtifactInfo:
        """Parse artifacts.json text; raises ValueError/KeyError/TypeError on bad content."""
        raw = json.loads(text)
        if raw["format_version"] != FORMAT_VERSION:
            raise ValueError(f"artifact format {raw['format_version']} != {FORMAT_VERSION}")
        return cls(
            model_name=str(raw["model_name"]),
            input_shape=tuple(int(d) for d in raw["input_shape"]),
            classes=int(raw["classes"]),
            manifest=ParamManifest.from_list(raw["manifest"]),
            optimizers=tuple(str(o) for o in raw["optimizers"]),
            sha256={str(k): str(v) for k, v in raw["sha256"].items()},
        )


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _static_shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = value.type.tensor_type.shape.dim[1:]  # dim 0 is the batch
    if any(not d.HasField("dim_value") for d in dims):
        raise ArtifactGenerationError(f"{value.name}: only the batch dimension may be symbolic")
    return tuple(int(d.dim_value) for d in dims)


def _generate_once(model: onnx.ModelProto, params: list[str], optimizer: str, out: Path) -> None:
    art = ort_compat.load_artifacts_module()
    optim = {"sgd": art.OptimType.SGD, "adamw": art.OptimType.AdamW}[optimizer]
    out.mkdir(parents=True, exist_ok=True)
    with ort_compat.captured_native_stderr() as native_log:
        try:
            art.generate_artifacts(
                model,
                requires_grad=params,
                loss=art.LossType.CrossEntropyLoss,
                optimizer=optim,
                artifact_directory=str(out),
                additional_output_names=[graphs.OUTPUT_NAME],
            )
            error: Exception | None = None
        except Exception as exc:  # ORT raises a zoo of types; we report one
            error = exc
    if error is not None:
        tail = "".join(native_log)[-2000:]
        raise ArtifactGenerationError(f"generate_artifacts failed: {error}\n{tail}") from error


def generate_artifacts(
    model: str | onnx.ModelProto,
    out_dir: Path,
    *,
    optimizers: Sequence[str] = OPTIMIZERS,
    seed: int = 0,
) -> ArtifactInfo:
    """Write training/eval/optimizer models, checkpoint and inference model to ``out_dir``.

    ``model`` is a zoo name (built with ``seed``) or an ONNX model with one input
    [N, ...] and one output ``logits`` [N, classes]; its float initializers are trained.
    """
    proto = get_spec(model).build(seed) if isinstance(model, str) else model
    ort_compat.check_ir_version(proto)
    unknown = [o for o in optimizers if o not in OPTIMIZERS]
    if unknown or not optimizers:
        raise ArtifactGenerationError(f"optimizers must be a non-empty subset of {OPTIMIZERS}")
    if len(proto.graph.input) != 1 or [o.name for o in proto.graph.output] != [graphs.OUTPUT_NAME]:
        raise ArtifactGenerationError("model needs exactly one input and one output 'logits'")
    manifest = ParamManifest.of(graphs.trainable_initializers(proto))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first, *rest = optimizers
    _generate_once(proto, list(manifest.names), first, out_dir)
    (out_dir / "optimizer_model.onnx").rename(out_dir / optimizer_file(first))
    for opt in rest:
        # The training/eval graphs do not depend on the optimizer; keep only its model.
        with tempfile.TemporaryDirectory() as tmp:
            _generate_once(proto, list(manifest.names), opt, Path(tmp))
            shutil.copyfile(Path(tmp) / "optimizer_model.onnx", out_dir / optimizer_file(opt))
    onnx.save(proto, out_dir / INFERENCE_MODEL)
    files = [TRAINING_MODEL, EVAL_MODEL, CHECKPOINT, INFERENCE_MODEL]
    files += [optimizer_file(o) for o in optimizers]
    info = ArtifactInfo(
        model_name=proto.graph.name,
        input_shape=_static_shape(proto.graph.input[0]),
        classes=_static_shape(proto.graph.output[0])[0],
        manifest=manifest,
        optimizers=tuple(optimizers),
        sha256={f: sha256_of(out_dir / f) for f in files},
    )
    (out_dir / INFO_FILE).write_text(info.to_json())
    log.info(
        "artifacts.generated", model=info.model_name, dir=str(out_dir), params=manifest.total_size
    )
    return info
