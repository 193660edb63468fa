"""Model zoo: ONNX graph builders, registry, parameter manifests and ORT training artifacts."""

from modelzoo.artifacts import ArtifactInfo, generate_artifacts
from modelzoo.data import Dataset, shuffled_batches
from modelzoo.errors import ArtifactGenerationError, ManifestError, UnknownModelError, ZooError
from modelzoo.params import ParamEntry, ParamManifest, flatten, manifest_of, unflatten
from modelzoo.registry import MODELS, ModelSpec, get_spec, model_names

__all__ = [
    "MODELS",
    "ArtifactGenerationError",
    "ArtifactInfo",
    "Dataset",
    "ManifestError",
    "ModelSpec",
    "ParamEntry",
    "ParamManifest",
    "UnknownModelError",
    "ZooError",
    "flatten",
    "generate_artifacts",
    "get_spec",
    "manifest_of",
    "model_names",
    "shuffled_batches",
    "unflatten",
]
