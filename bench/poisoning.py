"""Final accuracy with 10% poisoned devices, per aggregate rule, beside the clean run.

    python -m bench.poisoning [--models breast_cancer,digits_mlp] [--rounds 20]
                              [--attackers 0.1] [--rules fedavg,median,trimmed_mean]

For each rule, one clean run and one run per attack (``sign_flip``: update
x -1; ``scale``: x -10; ``boost``: reversed, at 99% of the norm bound), all
of the same seed, split and initial weights, on the in-memory federation
(``flctl demo``: real coordinator, aggregators, selectors and ONNX Runtime
devices). Attackers are valid devices (tokens, shapes, finite values): only
the rule and the norm bound (the default ``--clip-norm``) stop them. Prints
the final test accuracy of every run beside the clean run of its rule, and
PASS/FAIL of "within 2 points of clean" for the robust rules; FedAvg's loss
is shown as it is, with no verdict.
Exit 1 if a robust rule fails.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from typing import Any

import onnxruntime as ort

from flctl.demo import DemoOptions, run_demo
from flproc.logs import configure_logging
from services.coordinator.config import RoundSettings

ATTACKS = ("sign_flip", "scale", "boost")
TOLERANCE = 0.02  # accuracy points, as a fraction
ROBUST = ("median", "trimmed_mean")


def final_accuracy(report: dict[str, Any], model: str) -> float:
    """Test accuracy of the last version the run made (0 when no round closed)."""
    done = [r for r in report["models"][model] if r["outcome"] == "done"]
    return float(done[-1]["test_accuracy"]) if done else 0.0


def rejected(report: dict[str, Any], model: str) -> int:
    """Updates the aggregators refused over the run (the norm bound's work, mostly)."""
    rows = report["models"][model]
    return sum(h.get("rejected", 0) for r in rows for h in r["per_hospital"].values())


async def one_run(
    base: DemoOptions, rule: str, attack: str | None, fraction: float
) -> dict[str, Any]:
    """One demo run with ``rule`` and, when ``attack`` is given, ``fraction`` attackers."""
    opts = replace(
        base,
        rounds=replace(base.rounds, aggregation=rule),
        attackers=fraction if attack else 0.0,
        attack=attack or "sign_flip",
    )
    return await run_demo(opts, progress_stream=None)


def verdict(rule: str, attack: str | None, acc: float, clean: float) -> str:
    """PASS/FAIL for an attacked robust run; nothing to judge otherwise."""
    if attack is None or rule not in ROBUST:
        return ""
    return "PASS" if acc >= clean - TOLERANCE - 1e-9 else "FAIL"


async def compare(base: DemoOptions, rules: list[str], fraction: float) -> list[dict[str, Any]]:
    """Every (rule, attack) run; each row: rule, attack, model, accuracy, clean, verdict."""
    rows: list[dict[str, Any]] = []
    for rule in rules:
        clean_report = await one_run(base, rule, None, fraction)
        clean = {m: final_accuracy(clean_report, m) for m in base.models}
        for attack in (None, *ATTACKS):
            report = clean_report if attack is None else await one_run(base, rule, attack, fraction)
            for m in base.models:
                acc = final_accuracy(report, m)
                rows.append(
                    {
                        "rule": rule,
                        "attack": attack or "clean",
                        "model": m,
                        "accuracy": acc,
                        "clean": clean[m],
                        "rejected": rejected(report, m),
                        "poisoned": report["run"].get("poisoned_uploads", 0),
                        "verdict": verdict(rule, attack, acc, clean[m]),
                    }
                )
            print(_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _line(r: dict[str, Any]) -> str:
    delta = 100 * (r["accuracy"] - r["clean"])
    return (
        f"{r['rule']:<13}{r['attack']:<10}{r['model']:<15}{r['accuracy']:>8.4f}"
        f"{r['clean']:>8.4f}{delta:>+8.2f}{r['poisoned']:>9}{r['rejected']:>9}  {r['verdict']}"
    )


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a fixed-width table."""
    head = (
        f"{'rule':<13}{'attack':<10}{'model':<15}{'final':>8}{'clean':>8}{'pts':>8}"
        f"{'poisoned':>9}{'rejected':>9}  check"
    )
    return "\n".join([head, "-" * len(head), *(_line(r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    """Run every rule clean and attacked, print the table; exit 1 if a robust rule fails."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="breast_cancer,digits_mlp")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--hospitals", type=int, default=3)
    p.add_argument("--devices", type=int, default=10, help="per hospital")
    p.add_argument("--attackers", type=float, default=0.1)
    p.add_argument("--rules", default="fedavg,median,trimmed_mean")
    p.add_argument("--trim-fraction", type=float, default=0.3, help="of trimmed_mean")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    configure_logging("console", "error")
    ort.set_default_logger_severity(3)
    base = DemoOptions(
        models=tuple(args.models.split(",")),
        hospitals=args.hospitals,
        devices=args.devices,
        rounds=RoundSettings(
            rounds=args.rounds,
            round_timeout_ms=10_000,
            selection_window_ms=2_000,
            server_optimizer="fedadam",
            trim_fraction=args.trim_fraction,
        ),
        seed=args.seed,
    )
    rows = asyncio.run(compare(base, args.rules.split(","), args.attackers))
    print(
        f"poisoning: {args.attackers:.0%} attackers of {args.hospitals}x{args.devices} devices, "
        f"{args.rounds} rounds, seed {args.seed}, clip norm {base.rounds.clip_norm}, "
        f"trim fraction {args.trim_fraction}; "
        f"pts = final minus clean (same rule, same seed); check: robust rules within "
        f"{TOLERANCE * 100:.0f} points of clean"
    )
    print(table(rows))
    return 1 if any(r["verdict"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
