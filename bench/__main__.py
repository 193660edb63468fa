"""The bench suite: one command, one table, every figure beside a reference from the same run.

    python -m bench [--quick] [--only ROW[,ROW]] [--devices 30,300,1000] [--models M,M]
    flctl bench ...          (the same)

Rows (``--only`` names): ``stack`` (start-up of a local Mosquitto and Kafka,
and raw paho / aiokafka throughput on them: the references of the round
rows), ``population`` (resident memory per simulated device), ``rounds``
(end-to-end rounds with synthetic updates over real brokers: round wall time,
MB/s through MQTT and Kafka, peak RSS of the roles, the device processes and
the brokers), ``training`` (real ORT training rounds with the zoo's largest
model), ``flower`` (this project's in-memory demo beside Flower 1.42's
simulation, same MLP and split), ``aggregate`` and ``selector`` (rows of
``bench.aggregate`` / ``bench.selector`` when those modules are present).
``--quick`` is the CI-sized subset: 30 devices, the 100k model, no training
rows at scale. Progress goes to stderr; the table alone to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.suite import Row, optional_rows, render

SECTIONS = ("stack", "population", "rounds", "training", "flower", "aggregate", "selector")
RAW_MESSAGE = 512 * 1024  # the device's upload chunk size


def say(line: str) -> None:
    """A progress line on stderr."""
    print(f"bench: {line}", file=sys.stderr, flush=True)


def _mbps(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0


def stack_rows(quick: bool, refs: dict[str, float], population: bool) -> list[Row]:
    """Start-up of the local brokers, raw throughput on them, and population memory on them."""
    from bench.bus import raw_aiokafka, raw_paho
    from bench.population import per_device
    from flctl.brokers import LocalBrokers, free_port

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        local = LocalBrokers(free_port(), free_port(), Path(tmp), kafka_controller_port=free_port())
        began = time.perf_counter()
        mqtt = local.up(180, kafka=False).mqtt_url
        mqtt_s = time.perf_counter() - began
        kafka = local.up(180, mqtt=False).kafka_bootstrap
        total_s = time.perf_counter() - began
        try:
            assert mqtt and kafka
            rows.append(Row("local stack start-up s", f"{total_s:.1f}",
                            f"mosquitto {mqtt_s:.1f} + kafka {total_s - mqtt_s:.1f}"))  # fmt: skip
            n = 40 if quick else 200
            payload = b"\x01" * RAW_MESSAGE
            paho_s, _ = raw_paho(mqtt, n, payload, 20, 20)
            kafka_s, _ = asyncio.run(raw_aiokafka(kafka, n, payload, 20))
            refs["mqtt_mbps"], refs["kafka_mbps"] = (
                _mbps(n * RAW_MESSAGE, paho_s),
                _mbps(n * RAW_MESSAGE, kafka_s),
            )
            rows.append(Row("raw MQTT MB/s (paho, QoS 1, 512 KiB)", f"{refs['mqtt_mbps']:.0f}",
                            note="reference of the rounds' MQTT MB/s"))  # fmt: skip
            rows.append(Row("raw Kafka MB/s (aiokafka, acks=all)", f"{refs['kafka_mbps']:.0f}",
                            note="reference of the rounds' Kafka MB/s"))  # fmt: skip
            if population:
                small, large = (30, 100) if quick else (100, 1_000)
                say(f"population memory at {small} and {large} devices")
                try:
                    mb, base, runs = per_device(mqtt, small, large, Path(tmp) / "pop")
                except Exception as exc:  # one failed row must not lose the table
                    rows.append(Row("population RSS MB per device", "failed",
                                    note=f"{type(exc).__name__}: {exc}"[:160]))  # fmt: skip
                    return rows
                rows.append(Row(
                    "population RSS MB per device", f"{mb:.2f}",
                    f"{base:.0f} MB per worker process",
                    f"slope of {small}->{large} devices on {runs[0].shards} processes; all "
                    f"{large} listening after {runs[1].ready_s:.1f} s",
                ))  # fmt: skip
        finally:
            local.down()
    return rows


# The simulator's peak resident memory, measured by the rounds rows (docs/scaling.md):
# ~230 MB per device process (at most MAX_DEVICES_PER_SHARD devices), then per device
# ~0.25 MB plus ~23 bytes per model parameter (the version, the update and its chunks
# in flight at once).
PROCESS_BYTES, DEVICE_BYTES, PARAM_BYTES = 230e6, 0.25e6, 23.0


def simulator_bytes(params: int, devices: int) -> float:
    """Peak resident memory ``devices`` simulated devices of a ``params`` model need."""
    from flsim.shards import MAX_DEVICES_PER_SHARD

    processes = -(-devices // MAX_DEVICES_PER_SHARD)
    return processes * PROCESS_BYTES + devices * (DEVICE_BYTES + PARAM_BYTES * params)


def available_bytes() -> float | None:
    """Memory the kernel says is available now (Linux), keeping a fifth for the rest."""
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    return kb * 1024 * 0.8


def round_rows(models: list[str], devices: list[int], refs: dict[str, float],
               synthetic: bool = True) -> list[Row]:  # fmt: skip
    """End-to-end rounds per (model, devices): wall time, MB/s, peak RSS."""
    from bench.rounds import params_of, register_models, run_rounds

    register_models()
    rows: list[Row] = []
    kind = "synthetic" if synthetic else "training"
    for model in models:
        for n in devices:
            need, free = simulator_bytes(params_of(model), n), available_bytes()
            if free is not None and need > free:
                rows.append(Row(f"{kind} {model} x{n}: round s", "skipped",
                                note=f"the simulated devices need ~{need / 1e9:.1f} GB at peak, "
                                f"{free / 1e9:.1f} GB available (docs/scaling.md)"))  # fmt: skip
                say(f"{kind} rounds: {model}, {n} devices skipped: ~{need / 1e9:.1f} GB needed")
                continue
            say(f"{kind} rounds: {model}, {n} devices over real brokers")
            try:
                r = run_rounds(model, n, synthetic=synthetic)
            except Exception as exc:  # one failed run must not lose the table
                rows.append(Row(f"{kind} {model} x{n}: round s", "failed",
                                note=f"{type(exc).__name__}: {exc}"[:160]))  # fmt: skip
                continue
            size = f"{r.params / 1e6:.2f}M" if r.params >= 10_000 else f"{r.params} params"
            name = f"{kind} {model} ({size}) x{n}"
            steady = r.steady_s()
            up = r.params * 4
            mqtt_b = (n + r.reported()) * up  # every device gets the version, reporters upload
            kafka_b = r.reported() * up
            raw = refs.get("mqtt_mbps")
            rows.append(Row(
                f"{name}: round s", "-" if steady is None else f"{steady:.2f}",
                f"raw MQTT for its bytes {mqtt_b / 1e6 / raw:.2f}" if raw else "",
                f"{r.outcome()}; {r.reported():.0f} updates/round; ready {r.ready_s:.1f} s; "
                + ("no round done" if r.first_round_s is None
                   else f"first round done at {r.first_round_s:.1f} s"),
            ))  # fmt: skip
            if steady:
                rows.append(Row(
                    f"{name}: MB/s MQTT | Kafka",
                    f"{_mbps(mqtt_b, steady):.1f} | {_mbps(kafka_b, steady):.1f}",
                    f"raw {refs.get('mqtt_mbps', 0):.0f} | {refs.get('kafka_mbps', 0):.0f}",
                    "payload bytes a round moves (versions down, updates up) / round wall",
                ))  # fmt: skip
            m = r.rss_mb
            rows.append(Row(
                f"{name}: peak RSS MB", f"roles {m.get('roles', 0):.0f}, devices "
                f"{m.get('devices', 0):.0f} ({r.shards} proc)",
                f"mosquitto {m.get('mosquitto', 0):.0f}, kafka {m.get('kafka', 0):.0f}",
                "roles = coordinator + 2 selectors + aggregators in one process",
            ))  # fmt: skip
    return rows


def _our_in_memory(n: int, hospitals: int) -> tuple[float | None, str]:
    from flctl.demo import DemoOptions, run_demo
    from services.coordinator.config import RoundSettings

    opts = DemoOptions(models=("digits_mlp",), hospitals=hospitals, devices=n // hospitals,
                       rounds=RoundSettings(rounds=3), brokers="memory")  # fmt: skip
    report = asyncio.run(run_demo(opts, progress_stream=None))
    rows = report["models"]["digits_mlp"]
    done = [r for r in rows if r["outcome"] == "done"]
    steady = done[1:] or done
    walls = [r["wall_seconds"] for r in steady]
    over = [r["overhead_seconds"] for r in steady]
    admitted = [sum(h["admitted"] for h in r["per_hospital"].values()) for r in rows]
    note = f"{len(done)}/{len(rows)} done, admitted {admitted}"
    if over:
        note += f", overhead {sum(over) / len(over):.2f} s/round (wall minus training)"
    return (sum(walls) / len(walls) if walls else None), note


def flower_rows(devices: list[int]) -> list[Row]:
    """Our in-memory demo beside Flower's simulation, s/round, steady state."""
    from bench.rounds import hospitals_for

    rows: list[Row] = []
    for n in devices:
        h = hospitals_for(n)
        say(f"in memory vs Flower: {n} devices")
        ours, note = _our_in_memory(n, h)
        cmd = [sys.executable, "-m", "bench.flower_ref", "--devices", str(n), "--hospitals", str(h)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            lines = out.stdout.strip().splitlines()
            got = json.loads(lines[-1]) if lines else {"error": out.stderr.strip()[-300:]}
        except (subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            got = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        flower = float(got["steady_s_per_round"]) if "steady_s_per_round" in got else None
        ref = f"Flower {flower:.2f}" if flower else "Flower not available"
        if "error" in got:
            note += f"; Flower: {got['error']}"
        elif flower and ours:
            note += f"; ours/Flower {ours / flower:.2f} (target <= 0.5 at 1,000)"
        rows.append(Row(f"in memory digits_mlp x{n}: s/round", "-" if ours is None
                        else f"{ours:.2f}", ref, note))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the chosen rows and print the table."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a small CI-sized subset")
    p.add_argument("--only", default="", help=f"comma-separated rows of {', '.join(SECTIONS)}")
    p.add_argument("--devices", default="", help="device counts of the round and Flower rows")
    p.add_argument("--models", default="", help="models of the synthetic rounds")
    p.add_argument("--training-model", default="", help="default: the zoo's largest model")
    args = p.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    sections = only or list(SECTIONS)
    devices = [int(d) for d in args.devices.split(",") if d] or ([30] if args.quick else
                                                                  [30, 300, 1_000])  # fmt: skip
    models = [m for m in args.models.split(",") if m] or (
        ["bench_mlp_100k"] if args.quick else ["bench_mlp_100k", "bench_mlp_1m"]
    )
    from flproc.logs import prepare_process

    prepare_process("console", "error")
    refs: dict[str, float] = {}
    rows: list[Row] = []
    runs: dict[str, Callable[[], list[Row]]] = {
        "rounds": lambda: round_rows(models, devices, refs),
        "training": lambda: _training(args, devices, refs),
        "flower": lambda: flower_rows(devices),
        "aggregate": lambda: optional_rows("bench.aggregate", args.quick),
        "selector": lambda: optional_rows("bench.selector", args.quick),
    }
    if "stack" in sections or "population" in sections or "rounds" in sections:
        rows += _echoed(stack_rows(args.quick, refs, "population" in sections))
    for name in SECTIONS[2:]:
        if name in sections:
            try:
                rows += _echoed(runs[name]())
            except Exception as exc:  # one failed section must not lose the table
                rows += _echoed([Row(name, "failed", note=f"{type(exc).__name__}: {exc}"[:160])])
    print(render(rows), flush=True)
    return 0


def _echoed(rows: list[Row]) -> list[Row]:
    """Say each row as it is measured: a long run stopped half-way keeps what it had."""
    for r in rows:
        say(f"row: {r.row} = {r.figure} [{r.reference}] {r.note}")
    return rows


def _training(args: argparse.Namespace, devices: list[int], refs: dict[str, float]) -> list[Row]:
    from bench.rounds import largest_zoo_model

    model = args.training_model or largest_zoo_model()
    counts = devices if args.devices else [30] if args.quick else [100, 1_000]
    return round_rows([model], counts, refs, synthetic=False)


if __name__ == "__main__":
    sys.exit(main())
