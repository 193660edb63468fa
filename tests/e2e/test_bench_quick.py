"""``python -m bench --quick`` runs from a clone: its own brokers, every row measured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.mqtt, pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_suite_prints_a_table_with_every_row_measured() -> None:
    # stack, population and rounds start a local Mosquitto and Kafka of their own and
    # simulate devices in worker processes, as the full suite does; aggregate is in-process.
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "stack,population,rounds,aggregate"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout.splitlines()
    rows = {line.split("  ")[0]: line for line in table[2:]}
    assert not [r for r in table if " failed " in r or r.rstrip().endswith(" failed")], out.stdout
    wanted = [
        "local stack start-up s", "raw MQTT MB/s", "raw Kafka MB/s",
        "population RSS MB per device", "synthetic bench_mlp_100k (0.10M) x30: round s",
        "synthetic bench_mlp_100k (0.10M) x30: peak RSS MB",
        "aggregate: aggregator: decode+validate+fold x8",
    ]  # fmt: skip
    for name in wanted:
        assert any(row.startswith(name) for row in rows), f"no row {name!r} in\n{out.stdout}"
    rounds = next(line for name, line in rows.items() if name.endswith("x30: round s"))
    assert "3/3 done" in rounds, rounds
