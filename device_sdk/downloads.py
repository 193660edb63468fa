"""Model versions and artifact bundles arriving as retained chunks: reassemble and install.

One :class:`ModelDownloads` per installed model. Chunks of several streams may
interleave (a version being republished while old retained chunks are still
around); the reassembler keys them by ``stream_id``, so a stale chunk only
opens a stream that expires. Artifact bundles are written once per digest to
``<root>/<model>/<digest>/`` and verified before use.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from device_sdk.artifacts import read_verified_info
from device_sdk.errors import ArtifactError
from schemas import ModelVersion
from schemas.artifacts import ArtifactBundle
from schemas.chunking import ChunkedReceiver, StreamDecoder, decode_stream
from schemas.errors import SchemaError

log = structlog.get_logger(__name__)

Gate = Callable[[Any, str, str], bool]
"""(message, what, model) -> whether the device may adopt it (``ControlGate.admit``)."""

_SAFE_DIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def artifact_dir_name(digest: str) -> str:
    """A directory name for a bundle digest (the digest itself when it is path-safe)."""
    if _SAFE_DIR.fullmatch(digest) and ".." not in digest:
        return digest
    return hashlib.sha256(digest.encode()).hexdigest()[:32]


def install_bundle(bundle: ArtifactBundle, root: Path) -> Path:
    """Write the bundle's files under ``root/<model>/<digest>/`` once; verify and return it."""
    target = root / bundle.model / artifact_dir_name(bundle.digest)
    if target.is_dir():
        try:
            read_verified_info(target)
            return target
        except ArtifactError:
            shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        for name, data in bundle.files().items():
            (tmp / name).write_bytes(data)
        read_verified_info(tmp)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written bundle
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class ModelDownloads:
    """Reassembles one model's current ModelVersion and ArtifactBundle from chunks.

    A completed version or bundle is returned (a bundle installed) only if
    ``gate`` admits it: signed by the coordinator, and a version not older than
    the newest adopted (``device_sdk.trust``).
    """

    def __init__(
        self,
        model: str,
        artifact_root: Path,
        gate: Gate,
        timeout_ms: int = 10 * 60 * 1000,
        decoder: StreamDecoder = decode_stream,
    ) -> None:
        self.model = model
        self._root = artifact_root
        self._gate = gate
        self._versions = ChunkedReceiver(timeout_ms, decoder)
        self._bundles = ChunkedReceiver(timeout_ms, decoder)
        self._log = log.bind(model=model)

    def version_chunk(self, data: bytes, now_ms: int) -> ModelVersion | None:
        """Feed a chunk of a ModelVersion; return the version when it completes."""
        msg = self._add(self._versions, data, now_ms, "version")
        if msg is None:
            return None
        if not isinstance(msg, ModelVersion) or msg.model != self.model:
            self._log.warning("download.rejected", what="version", got=type(msg).__name__)
            return None
        if not self._gate(msg, "version", self.model):
            return None
        self._log.info("model.received", version=msg.version, digest=msg.artifact_digest)
        return msg

    def bundle_chunk(self, data: bytes, now_ms: int) -> tuple[str, Path] | None:
        """Feed a chunk of an ArtifactBundle; return (digest, directory) once installed."""
        msg = self._add(self._bundles, data, now_ms, "artifacts")
        if msg is None:
            return None
        if not isinstance(msg, ArtifactBundle) or msg.model != self.model:
            self._log.warning("download.rejected", what="artifacts", got=type(msg).__name__)
            return None
        if not self._gate(msg, "artifacts", self.model):
            return None  # never written to disk
        try:
            path = install_bundle(msg, self._root)
        except (ArtifactError, OSError) as exc:
            self._log.warning("artifacts.rejected", digest=msg.digest, error=str(exc))
            return None
        self._log.info("artifacts.installed", digest=msg.digest, dir=str(path))
        return msg.digest, path

    def expire(self, now_ms: int) -> None:
        """Forget half-received streams that stopped arriving."""
        self._versions.expire(now_ms)
        self._bundles.expire(now_ms)

    def _add(self, rx: ChunkedReceiver, data: bytes, now_ms: int, what: str) -> Any | None:
        try:
            return rx.add(data, now_ms)
        except SchemaError as exc:
            self._log.warning("download.rejected", what=what, error=str(exc))
            return None
