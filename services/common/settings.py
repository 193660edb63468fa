"""Settings more than one service reads, declared once (see ``flproc.settings``)."""

from __future__ import annotations

from flproc.parsers import secret_bytes
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
