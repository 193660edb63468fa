"""The test deployment's coordinator key pair: helpers sign with it, devices pin it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TypeVar

from flcore.signing import Signer, TrustedKeys

T = TypeVar("T")

SIGNER = Signer.from_seed(hashlib.sha256(b"nightshift-fl test coordinator").digest())
KEYS: TrustedKeys = SIGNER.trusted()
FORGER = Signer.from_seed(hashlib.sha256(b"nightshift-fl someone else").digest())


def signed(msg: T) -> T:
    """``msg`` signed by the test coordinator."""
    out: T = SIGNER.sign(msg)
    return out


def write_public_key(folder: Path) -> Path:
    """The test coordinator's public key as a PEM file in ``folder`` (what devices pin)."""
    path = folder / "coordinator.pub"
    path.write_bytes(SIGNER.public_pem())
    return path


def write_private_key(folder: Path) -> Path:
    """The test coordinator's private key as a PEM file (mode 0600) in ``folder``."""
    path = folder / "coordinator.key"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(SIGNER.private_pem())
    return path
