"""Hostile bytes at every ingress, in child processes so a native crash is seen.

A bounded slice of ``python -m bench.fuzz`` (the same driver, 2,000 inputs per
ingress), and every input that ever crashed or escaped (tests/unit/data/fuzz_crashes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CRASHES = Path(__file__).resolve().parent / "data" / "fuzz_crashes"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
PER_TYPE = 2000
SLICE_ARGS = ["--per-type", str(PER_TYPE), "--batch", str(PER_TYPE), "--reference-sample", "0"]
SLICE_ARGS += ["--quiet", "--json"]

_REPLAY = """
import sys
from pathlib import Path
from schemas import codec
from schemas.chunking import ChunkedReceiver, parse_chunk
from schemas.errors import SchemaError

data = Path(sys.argv[1]).read_bytes()
for decode in (codec.decode, codec.decode_reference, parse_chunk, ChunkedReceiver().add):
    try:
        decode(data, 0) if decode.__name__ == "add" else decode(data)
        print("message")
    except SchemaError as e:
        print(type(e).__name__, e)
"""


def test_fuzz_slice_has_no_crash_and_no_escape() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.fuzz", *SLICE_ARGS],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    tallies = json.loads(run.stdout.splitlines()[-1])
    from bench.fuzz_inputs import INGRESSES

    assert set(tallies) == set(INGRESSES)
    for name, t in tallies.items():
        assert (t["tried"], t["escapes"], t["crashes"]) == (PER_TYPE, 0, 0), (name, t["notes"])
        assert t["ok"] + t["rejected"] == PER_TYPE
        assert t["rejected"] > PER_TYPE // 2, f"{name}: the mutations hardly damage anything"


@pytest.mark.parametrize("path", sorted(CRASHES.glob("*.bin")), ids=lambda p: p.stem)
def test_input_that_once_crashed_is_a_typed_rejection(path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _REPLAY, str(path)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    outcomes = run.stdout.splitlines()
    assert len(outcomes) == 4 and "message" not in outcomes, outcomes


def test_crash_regressions_are_there() -> None:
    assert list(CRASHES.glob("*.bin"))
