"""Settings more than one service reads, declared once (see ``flproc.settings``)."""

from __future__ import annotations

from flproc.keys import coordinator_key_file
from flproc.parsers import ids_or_count, secret_bytes
from flproc.settings import Setting

TOKEN_SECRET = Setting(
    "token_secret",
    "--token-secret",
    "FL_TOKEN_SECRET",
    "admission token secret, the same for every selector and aggregator",
    secret_bytes,
    secret=True,
    required=True,
)

HOSPITALS = Setting(
    "hospitals",
    "--hospitals",
    "FL_HOSPITALS",
    "hospital ids, comma separated, or a count (3 = h0,h1,h2)",
    ids_or_count("h"),
    "h0,h1,h2",
)

COORDINATOR_KEY = Setting(
    "coordinator_key",
    "--coordinator-key",
    "FL_COORDINATOR_KEY",
    "the coordinator's Ed25519 public key (PEM file): devices adopt only plans, model "
    "versions and artifacts it signed",
    coordinator_key_file,
    required=True,
)
