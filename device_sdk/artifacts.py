"""Reading and verifying an artifact directory on the device (never generating one)."""

from __future__ import annotations

from pathlib import Path

from device_sdk.errors import ArtifactError, UnknownModelError
from modelzoo.artifacts import INFO_FILE, ArtifactInfo, sha256_of


def read_verified_info(artifact_dir: Path) -> ArtifactInfo:
    """Parse artifacts.json and check every listed file against its SHA-256."""
    info_path = Path(artifact_dir) / INFO_FILE
    try:
        info = ArtifactInfo.from_json(info_path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{info_path} is missing") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{info_path} is malformed: {exc}") from exc
    for name, expected in info.sha256.items():
        path = Path(artifact_dir) / name
        if not path.is_file():
            raise ArtifactError(f"artifact file {path} is missing")
        if sha256_of(path) != expected:
            raise ArtifactError(f"artifact file {path} is corrupted (SHA-256 mismatch)")
    return info


class InstalledModels:
    """Artifact directories under one root, one sub-directory per model name."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    def names(self) -> tuple[str, ...]:
        """Names of the models with an artifacts.json under the root."""
        if not self._root.is_dir():
            return ()
        return tuple(sorted(p.parent.name for p in self._root.glob(f"*/{INFO_FILE}")))

    def path_for(self, model: str) -> Path:
        """Artifact directory of ``model``; UnknownModelError if it is not installed."""
        path = self._root / model
        if "/" in model or model in ("", ".", "..") or not (path / INFO_FILE).is_file():
            raise UnknownModelError(f"model {model!r} is not installed under {self._root}")
        return path
