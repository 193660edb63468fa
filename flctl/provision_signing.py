"""The coordinator's signing key pair for a deployment (part of ``flctl provision``).

:func:`write_signing` creates ``DIR/signing/coordinator.key`` (PKCS8 PEM, mode
0600: only the coordinator's host needs it) and ``DIR/signing/coordinator.pub``
(what every device pins), and returns the ``FL_*`` settings each
role instance needs. An existing key pair is kept: devices in the field pin the
public key, so a new one would make them refuse every later plan and version.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flcore.signing import Signer

KEY_FILE, PUB_FILE = "coordinator.key", "coordinator.pub"


def _write_private(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def write_signing(
    out_dir: Path, hospitals: tuple[str, ...] = ("h0", "h1", "h2")
) -> dict[str, dict[str, str]]:
    """Create (or keep) the signing key pair under ``out_dir/signing``; the env of each role.

    Returns ``{"coordinator": {"FL_SIGNING_KEY": ...}, "devices-<hospital>":
    {"FL_COORDINATOR_KEY": ...}}`` with absolute paths.
    """
    folder = Path(out_dir).resolve() / "signing"
    folder.mkdir(parents=True, exist_ok=True)
    key, pub = folder / KEY_FILE, folder / PUB_FILE
    if key.exists():
        signer = Signer.from_pem(key.read_bytes())
    else:
        signer = Signer.from_seed(secrets.token_bytes(32))
        _write_private(key, signer.private_pem())
    key.chmod(0o600)
    pub.write_bytes(signer.public_pem())
    pinned = {"FL_COORDINATOR_KEY": str(pub)}
    # Selectors forward plans and versions byte for byte and verify nothing: no key.
    envs: dict[str, dict[str, str]] = {"coordinator": {"FL_SIGNING_KEY": str(key)}}
    for hospital in hospitals:
        envs[f"devices-{hospital}"] = dict(pinned)
    return envs
