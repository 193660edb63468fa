"""Processes sharing one log file (a role's device shards) never mix their lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys, structlog
from flproc.logs import configure_logging
configure_logging("json", "info")
log = structlog.get_logger("test")
for k in range(int(sys.argv[2])):
    log.info("line", proc=int(sys.argv[1]), k=k)
"""


def test_concurrent_processes_write_whole_json_lines(tmp_path: Path) -> None:
    path, procs, count = tmp_path / "role.log", 4, 3000
    with open(path, "ab") as out:  # as a role's log: its processes append to one file
        # Unbuffered, as in containers (PYTHONUNBUFFERED=1): each write reaches the file
        # as it is made, so a line written in two parts can be split by another's.
        env = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-c", WRITER]
        workers = [
            subprocess.Popen([*command, str(i), str(count)], stderr=out, cwd=ROOT, env=env)
            for i in range(procs)
        ]
        assert [w.wait(60) for w in workers] == [0] * procs
    events = [json.loads(line) for line in path.read_text().splitlines()]  # one object a line
    assert sorted((e["proc"], e["k"]) for e in events) == [
        (p, k) for p in range(procs) for k in range(count)
    ]
