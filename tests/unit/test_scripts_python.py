"""scripts/lib.sh picks the interpreter: $PYTHON, an active venv, else this clone's .venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _clone(tmp_path: Path) -> Path:
    """A directory laid out like a clone, holding only scripts/lib.sh."""
    root = tmp_path / "clone"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "lib.sh", root / "scripts" / "lib.sh")
    return root


def _run(root: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Source the clone's lib.sh in bash with only ``env`` (and a PATH) set, then run ``script``."""
    base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": os.environ["HOME"]}
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{root}/scripts/lib.sh"; {script}'],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fl_python_creates_and_uses_the_clones_own_venv(tmp_path: Path) -> None:
    root = _clone(tmp_path)

    done = _run(root, 'fl_python; echo "$PY"')

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{root}/.venv/bin/python"
    assert (root / ".venv" / "bin" / "python").exists()


def test_fl_python_honours_python_then_an_active_venv(tmp_path: Path) -> None:
    root = _clone(tmp_path)

    chosen = _run(root, 'fl_python; echo "$PY"', PYTHON="/opt/py/bin/python3")
    active = _run(root, 'fl_python; echo "$PY"', VIRTUAL_ENV="/opt/venv")

    assert chosen.stdout.strip() == "/opt/py/bin/python3"
    assert active.stdout.strip() == "/opt/venv/bin/python"
    assert not (root / ".venv").exists()


def test_fl_imports_this_clone_only_when_flctl_comes_from_it(tmp_path: Path) -> None:
    # Prepare: one interpreter, flctl importable from this tree, and a second "clone".
    other = _clone(tmp_path)
    check = 'PY="$1"; fl_imports_this_clone'
    here = f'source "{ROOT}/scripts/lib.sh"; {check}'

    # Execute: ask, for each clone, whether the interpreter runs that clone's flctl.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    mine = subprocess.run(["bash", "-c", here, "-", sys.executable], env=env)
    theirs = subprocess.run(
        ["bash", "-c", f'source "{other}/scripts/lib.sh"; {check}', "-", sys.executable], env=env
    )

    # Assert: the other clone would get its own install instead of running this code.
    assert mine.returncode == 0
    assert theirs.returncode != 0
