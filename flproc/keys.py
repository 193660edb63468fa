"""Setting parsers for the control-plane keys: a PEM file's path in, a usable key out.

The file is read when the setting is parsed, so a missing or malformed key
stops the role at start-up with one line naming the flag and variable (exit 2),
before anything connects.
"""

from __future__ import annotations

import stat
from pathlib import Path

from flcore.errors import InvalidParameter
from flcore.signing import Signer, TrustedKeys


def _read(raw: str) -> tuple[Path, bytes]:
    path = Path(raw.strip()).expanduser()
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def signing_key_file(raw: str) -> Signer:
    """The coordinator's Ed25519 private key from a PKCS8 PEM file only its owner may read."""
    path, data = _read(raw)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{path} is readable by others: chmod 600 it")
    try:
        return Signer.from_pem(data)
    except InvalidParameter as exc:
        raise ValueError(f"{path}: {exc}") from None


def coordinator_key_file(raw: str) -> TrustedKeys:
    """The coordinator's pinned Ed25519 public key from a PEM file."""
    path, data = _read(raw)
    try:
        return TrustedKeys.from_pem(data)
    except InvalidParameter as exc:
        raise ValueError(f"{path}: {exc}") from None
