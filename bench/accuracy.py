"""Accuracy of the federated demo beside a plain NumPy FedAvg on the same split and weights.

    python -m bench.accuracy [--rounds 30] [--brokers memory|local]

Runs, in one process and one run:
1. the NumPy FedAvg reference (no buses, no ONNX Runtime);
2. ``flctl demo`` with the same partition spec and initial weights, FedAvg,
   SGD lr 0.1, batch 32, 1 local epoch, every device every round;
3. the demo again with a server optimizer (FedAdam) and with 3 local epochs.
Prints the per-round accuracies side by side and the checks of issue #4:
demo within 0.03 of the reference; FedAdam or more epochs >= 0.93 at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import numpy_helper

from bench.reference_fedavg import numpy_fedavg
from flctl.demo import DemoOptions, run_demo
from flproc.logs import configure_logging
from flsim.datasets import model_dataset
from flsim.partition import dirichlet_partition
from modelzoo import get_spec
from services.coordinator.config import RoundSettings

MODEL = "digits_mlp"


def _accuracies(report: dict, model: str) -> list[float]:
    return [r["test_accuracy"] for r in report["models"][model] if r["outcome"] == "done"]


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it; exit 1 if a check fails."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--hospitals", type=int, default=3)
    p.add_argument("--devices", type=int, default=10, help="per hospital")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--brokers", default="memory", choices=("memory", "local"))
    args = p.parse_args(argv)
    configure_logging("console", "error")
    ort.set_default_logger_severity(3)

    spec = get_spec(MODEL)
    data = model_dataset(spec)
    rng = np.random.default_rng(args.seed)
    split = dirichlet_partition(
        data.y, args.hospitals, args.devices, args.alpha, rng, 0.2, spec.dataset
    )
    init = {i.name: numpy_helper.to_array(i) for i in spec.build(args.seed + 1).graph.initializer}
    work = Path(tempfile.mkdtemp(prefix="fl-accuracy-"))
    (work / "partition.json").write_text(json.dumps(split.to_json_dict()))
    np.savez(work / "init.npz", **init)

    settings = RoundSettings(
        rounds=args.rounds,
        local_epochs=1,
        batch_size=32,
        learning_rate=0.1,
        fraction=1.0,
        round_timeout_ms=60_000,
        selection_window_ms=5_000,
    )
    base = DemoOptions(
        models=(MODEL,),
        rounds=settings,
        partition=work / "partition.json",
        init_weights=work / "init.npz",
        brokers=args.brokers,
        seed=args.seed,
    )
    print(
        f"split: {len(split.devices)} devices, {len(split.test)} test rows, alpha {args.alpha}; "
        f"initial weights: zoo seed {args.seed + 1}; brokers: {args.brokers}",
        flush=True,
    )
    reference = numpy_fedavg(
        split, data, init, rounds=args.rounds, lr=0.1, batch_size=32, local_epochs=1, seed=args.seed
    )
    runs = {
        "demo fedavg": base,
        "demo fedadam": replace(base, rounds=replace(settings, server_optimizer="fedadam")),
        "demo 3 epochs": replace(base, rounds=replace(settings, local_epochs=3)),
    }
    results: dict[str, list[float]] = {"numpy fedavg": reference}
    for name, opts in runs.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = _accuracies(asyncio.run(run_demo(opts, progress_stream=None)), MODEL)
    names = list(results)
    print("round " + " ".join(f"{n:>14}" for n in names))
    for r in range(args.rounds):
        cells = [results[n][r] if r < len(results[n]) else float("nan") for n in names]
        print(f"{r + 1:>5} " + " ".join(f"{c:>14.4f}" for c in cells))
    gap = abs(results["demo fedavg"][-1] - reference[-1])
    best_alt = max(results["demo fedadam"][-1], results["demo 3 epochs"][-1])
    ok_gap, ok_alt = gap <= 0.03, best_alt >= 0.93
    print(
        f"final: numpy fedavg {reference[-1]:.4f}, demo fedavg {results['demo fedavg'][-1]:.4f}"
        f" -> gap {gap:.4f} (target <= 0.03): {'PASS' if ok_gap else 'FAIL'}"
    )
    print(
        f"final: demo fedadam {results['demo fedadam'][-1]:.4f}, demo 3 epochs "
        f"{results['demo 3 epochs'][-1]:.4f} -> best {best_alt:.4f} (target >= 0.93): "
        f"{'PASS' if ok_alt else 'FAIL'}"
    )
    return 0 if ok_gap and ok_alt else 1


if __name__ == "__main__":
    sys.exit(main())
