"""Version 0 of a model: ``--init-weights`` read and checked, or the zoo's seeded initialisation.

A bad file is a bad setting: every error names the setting and the file, and
one that does not fit the model lists the parameters the model expects, with
their shapes, so the file can be made right without reading the zoo's code.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from onnx import numpy_helper

from flproc.errors import SettingError
from modelzoo import ParamManifest, get_spec
from services.coordinator.config import CoordinatorConfig

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with files, an empty zip


def read_npz(path: Path, setting: str = "init_weights") -> dict[str, np.ndarray]:
    """Arrays by name from an ``.npz`` file; SettingError naming ``setting`` and the file."""
    try:
        with Path(path).open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise SettingError(setting, f"cannot read {path}: {e.strerror or e}") from None
    if magic not in _ZIP_MAGIC:
        raise SettingError(
            setting,
            f"{path} is not an .npz file (a zip of named arrays, "
            "as numpy.savez writes: np.savez(path, **{name: array}))",
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise SettingError(setting, f"cannot read {path} as .npz: {e}") from None


def fitted_weights(
    arrays: Mapping[str, np.ndarray],
    model: str,
    manifest: ParamManifest,
    setting: str,
    path: Path,
) -> dict[str, np.ndarray]:
    """The model's parameters from ``arrays`` as float32; SettingError listing what misfits.

    Every parameter of ``manifest`` must be there with its shape, numeric and
    finite; arrays of other names are ignored.
    """
    missing = [e.name for e in manifest.entries if e.name not in arrays]
    problems = [f"lacks {', '.join(missing)}"] if missing else []
    for e in manifest.entries:
        array = arrays.get(e.name)
        if array is None:
            continue
        if tuple(array.shape) != tuple(e.shape):
            problems.append(f"has {e.name} of shape {list(array.shape)}")
        elif not np.issubdtype(array.dtype, np.number):
            problems.append(f"has {e.name} of type {array.dtype}")
        elif not np.isfinite(array).all():
            problems.append(f"has non-finite values in {e.name}")
    if problems:
        held = ", ".join(f"{n} {list(a.shape)}" for n, a in arrays.items()) or "no arrays"
        raise SettingError(
            setting,
            f"{path} {'; '.join(problems)}. {model} expects {manifest.describe()}; "
            f"the file holds {held}",
        )
    return {e.name: np.asarray(arrays[e.name], np.float32) for e in manifest.entries}


def initial_weights(model: str, config: CoordinatorConfig) -> dict[str, np.ndarray]:
    """Version 0: ``--init-weights`` if given for ``model``, else the zoo's seeded weights."""
    spec = get_spec(model)
    manifest = spec.param_manifest()
    path = config.init_weights.get(model)
    if path is not None:
        setting = f"init_weights[{model}]"
        return fitted_weights(read_npz(path, setting), model, manifest, setting, path)
    graph = spec.build(config.seed)
    return {
        i.name: numpy_helper.to_array(i)
        for i in graph.graph.initializer
        if i.name in manifest.names
    }
