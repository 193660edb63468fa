"""Training benchmark: ``python -m bench.train [--epochs 3] [--batch-size 32]``.

For every zoo model, prints the time per training step and per epoch with ONNX
Runtime Training (through the device SDK's Trainer) and with the NumPy
reference where one exists, the one-off ORT session setup, and the peak RSS of
this process (resource.getrusage) after each model's training. A second table
times one device's ``--rounds`` rounds with an ORT session built every round
beside the pooled session it now reuses (device_sdk.sessions).
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import structlog

from device_sdk.sessions import SessionPool
from device_sdk.trainer import TrainConfig, Trainer
from flsim.datasets import model_dataset
from modelzoo import generate_artifacts, get_spec, model_names, shuffled_batches, unflatten
from modelzoo import reference as ref


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def bench_model(
    name: str, root: Path, epochs: int, batch: int, lr: float, repeat: int, threads: int | None
) -> list[list[str]]:
    """Rows of the table for one model: ORT, then the NumPy reference if there is one."""
    spec = get_spec(name)
    data = model_dataset(spec)
    n = len(data.y)
    t0 = time.perf_counter()
    generate_artifacts(name, root / name)
    gen_ms = (time.perf_counter() - t0) * 1e3
    trainer = Trainer(root / name, threads=threads)
    rng = np.random.default_rng(0)
    config = TrainConfig(epochs=epochs, batch_size=batch, learning_rate=lr)
    # Setup cost: a one-step run is dominated by building the ORT session.
    one_step = [
        trainer.train(data.X, data.y, TrainConfig(max_steps=1, batch_size=batch), rng)
        for _ in range(repeat)
    ]
    runs = [trainer.train(data.X, data.y, config, rng) for _ in range(repeat)]
    setup_s = float(np.median([r.train_seconds for r in one_step]))
    run_s = float(np.median([r.train_seconds for r in runs]))
    result = runs[-1]
    ort_step = (run_s - setup_s) / max(result.num_steps - 1, 1)
    steps_per_epoch = result.num_steps // epochs
    rows = [
        [
            name,
            "onnxruntime",
            str(trainer.manifest.total_size),
            str(n),
            str(steps_per_epoch),
            f"{ort_step * 1e3:.3f}",
            f"{run_s / epochs * 1e3:.1f}",
            f"{(setup_s - ort_step) * 1e3:.1f}",
            f"{result.mean_loss:.4f}",
            f"{gen_ms:.0f}",
            f"{peak_rss_mb():.0f}",
        ]
    ]
    if spec.has_reference:
        timings: list[float] = []
        for _ in range(repeat):
            params = unflatten(trainer.weights(), trainer.manifest)
            losses: list[float] = []
            t0 = time.perf_counter()
            for _ in range(epochs):
                batches = shuffled_batches(n, batch, rng)
                params, epoch_losses = ref.train_epoch(params, data.X, data.y, batches, lr)
                losses += epoch_losses
            timings.append(time.perf_counter() - t0)
        seconds = float(np.median(timings))
        rows.append(
            [
                name,
                "numpy-ref",
                str(trainer.manifest.total_size),
                str(n),
                str(steps_per_epoch),
                f"{seconds / len(losses) * 1e3:.3f}",
                f"{seconds / epochs * 1e3:.1f}",
                "-",
                f"{float(np.mean(losses)):.4f}",
                "-",
                f"{peak_rss_mb():.0f}",
            ]
        )
    return rows


def rebuild_vs_reuse(
    name: str, root: Path, rounds: int, rows: int, threads: int | None
) -> list[str]:
    """One device's ``rounds`` rounds on ``rows`` examples: a session built per round vs pooled."""
    data = model_dataset(get_spec(name))
    x, y = data.X[:rows], data.y[:rows]
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=0.05)
    cells = [name, str(rounds), str(rows)]
    per_round = []
    for pool in (SessionPool[Any](max_idle=0), SessionPool[Any]()):  # rebuild, then reuse
        trainer = Trainer(root / name, threads=threads, sessions=pool)
        start = trainer.weights()
        t0 = time.perf_counter()
        for r in range(rounds):
            trainer.load_weights(start)  # each round brings new global weights
            trainer.train(x, y, config, np.random.default_rng(r))
        per_round.append((time.perf_counter() - t0) / rounds)
        cells += [f"{per_round[-1] * 1e3:.1f}", str(pool.built)]
    cells.append(f"{per_round[0] / per_round[1]:.2f}x")
    return cells


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; median shown")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (0: default)")
    parser.add_argument("--models", default=",".join(model_names()), help="comma separated")
    parser.add_argument(
        "--rounds", type=int, default=20, help="rounds of one device, rebuild/reuse"
    )
    parser.add_argument("--device-rows", type=int, default=64, help="examples of that device")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    threads = args.threads or None
    header = [
        "model",
        "engine",
        "params",
        "examples",
        "steps/epoch",
        "ms/step",
        "ms/epoch",
        "setup ms",
        "mean loss",
        "artifacts ms",
        "peak RSS MiB",
    ]
    print(
        f"python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
        f"numpy {np.__version__}, {platform.machine()}; SGD lr={args.lr}, "
        f"batch {args.batch_size}, {args.epochs} epochs, ORT threads {threads or 'default'}, "
        f"median of {args.repeat} runs"
    )
    print(f"peak RSS after imports: {peak_rss_mb():.0f} MiB")
    rows: list[list[str]] = []
    reuse: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows += bench_model(
                name, Path(tmp), args.epochs, args.batch_size, args.lr, args.repeat, threads
            )
            reuse.append(rebuild_vs_reuse(name, Path(tmp), args.rounds, args.device_rows, threads))
    _print_table(header, rows)
    print(
        "ORT ms/epoch includes a round's setup (setup ms: weights into the pooled session); "
        "ms/step excludes it. Peak RSS is the process high-water mark after that row (monotonic)."
    )
    print()
    _print_table(
        ["model", "rounds", "rows", "rebuild ms/rd", "built", "reuse ms/rd", "built", "speed-up"],
        reuse,
    )
    print(
        "One device's rounds (load the new global weights, one epoch): a session built every "
        "round (a pool that keeps none) beside the pooled session of device_sdk.sessions."
    )


if __name__ == "__main__":
    main()
