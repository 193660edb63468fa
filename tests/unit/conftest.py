"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.signing import write_private_key, write_public_key


@pytest.fixture
def no_fl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``FL_*`` variable from the shell (a developer's or CI's) reaches the test."""
    for key in [k for k in os.environ if k.startswith("FL_")]:
        monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def _signing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("signing")
    write_private_key(folder)
    write_public_key(folder)
    return folder


@pytest.fixture(autouse=True)
def coordinator_keys_in_env(_signing_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FL_SIGNING_KEY / FL_COORDINATOR_KEY name the test key pair, as after flctl provision.

    The roles refuse to start without them; ``no_fl_env`` removes them again.
    """
    monkeypatch.setenv("FL_SIGNING_KEY", str(_signing_dir / "coordinator.key"))
    monkeypatch.setenv("FL_COORDINATOR_KEY", str(_signing_dir / "coordinator.pub"))
