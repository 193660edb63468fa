"""The control plane's identity: the coordinator's Ed25519 signing key pair.

Writes ``signing/coordinator.key`` (PKCS8 PEM, 0600: the coordinator's host
only) and ``signing/coordinator.pub`` (0644: every device pins it), and sets
``FL_SIGNING_KEY`` for the coordinator and ``FL_COORDINATOR_KEY`` for each
hospital's simulated devices. Selectors forward plans and versions byte for
byte and verify nothing: they get no key.

``--force`` replaces the pair with the rest of the directory: devices that
pinned the old public key then refuse every later plan and version until they
are given the new one.
"""

from __future__ import annotations

import secrets

from flcore.signing import Signer
from flctl.provision.files import PUBLIC, write
from flctl.provision.identities import COORDINATOR, Deployment, Written, simulator

KEY_FILE, PUB_FILE = "coordinator.key", "coordinator.pub"


def write_signing(d: Deployment) -> Written:
    """The key pair; the coordinator's and the devices' env lines."""
    signer = Signer.from_seed(secrets.token_bytes(32))
    write(d.out / "signing" / KEY_FILE, signer.private_pem())
    write(d.out / "signing" / PUB_FILE, signer.public_pem(), PUBLIC)
    pinned = f"FL_COORDINATOR_KEY={d.at('signing', PUB_FILE)}"
    env = {COORDINATOR: [f"FL_SIGNING_KEY={d.at('signing', KEY_FILE)}"]}
    env.update({simulator(h): [pinned] for h in d.hospitals})
    return Written(env)
