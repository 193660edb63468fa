"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def no_fl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``FL_*`` variable from the shell (a developer's or CI's) reaches the test."""
    for key in [k for k in os.environ if k.startswith("FL_")]:
        monkeypatch.delenv(key)
