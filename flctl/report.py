"""What a demo run shows a person: progress lines, a summary table, report.json, a plot."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.coordinator.summary import RoundSummary

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def busy_seconds(spans: Iterable[tuple[int, int]], start_ms: int, end_ms: int) -> float:
    """Seconds of [start_ms, end_ms] during which at least one span (a device training) ran."""
    clipped = sorted(
        (max(a, start_ms), min(b, end_ms)) for a, b in spans if b > start_ms and a < end_ms
    )
    total = 0
    current: tuple[int, int] | None = None  # the merged span being extended
    for a, b in clipped:
        if current is None or a > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = (a, b)
        else:
            current = (current[0], max(current[1], b))
    if current is not None:
        total += current[1] - current[0]
    return total / 1000


def round_row(s: RoundSummary, busy: float | None = None) -> dict[str, Any]:
    """One round as a report.json entry.

    ``busy`` is the time any device spent training during the round's wall time (with
    several models, devices also train the other models' rounds); overhead is the wall
    time left over. Without it, the round's own devices' training time is used.
    """
    hospitals = sorted(set(s.goals) | set(s.admitted) | set(s.reported))
    dropped = {
        h: max(0, s.admitted.get(h, 0) - s.reported.get(h, 0) - s.rejected.get(h, 0))
        for h in hospitals
    }
    return {
        "round": s.round_id,
        "outcome": s.outcome,
        "reason": s.reason,
        "base_version": s.base_version,
        "new_version": s.new_version,
        "test_accuracy": s.metrics.get("accuracy"),
        "test_loss": s.metrics.get("loss"),
        "train_loss": None if math.isnan(s.train_loss) else s.train_loss,
        "examples": s.examples,
        "per_hospital": {
            h: {
                "goal": s.goals.get(h, 0),
                "admitted": s.admitted.get(h, 0),
                "reported": s.reported.get(h, 0),
                "rejected": s.rejected.get(h, 0),
                "dropped": dropped[h],
            }
            for h in hospitals
        },
        "wall_seconds": round(s.wall_seconds, 4),
        "training_seconds": round(s.train_seconds, 4),
        "device_busy_seconds": round(s.train_seconds if busy is None else busy, 4),
        "overhead_seconds": round(s.wall_seconds - (s.train_seconds if busy is None else busy), 4),
    }


def build_report(
    histories: Mapping[str, Sequence[RoundSummary]],
    run: Mapping[str, Any],
    spans: Sequence[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The whole run: settings, then per model every round (``spans``: device training)."""

    def busy(s: RoundSummary) -> float | None:
        return None if spans is None else busy_seconds(spans, s.opened_at_ms, s.closed_at_ms)

    return {
        "run": dict(run),
        "models": {m: [round_row(s, busy(s)) for s in rounds] for m, rounds in histories.items()},
    }


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else float("nan")


def summary_table(report: Mapping[str, Any]) -> str:
    """A fixed-width table: one line per model."""
    header = (
        f"{'model':<14} {'rounds':>6} {'done':>5} {'aband.':>6} {'final acc':>9} {'best acc':>8} "
        f"{'final loss':>10} {'wall s/rd':>9} {'busy s/rd':>9} {'overhead s/rd':>13}"
    )
    lines = [header, "-" * len(header)]
    for model, rows in report["models"].items():
        done = [r for r in rows if r["outcome"] == "done"]
        accs = [r["test_accuracy"] for r in done if r["test_accuracy"] is not None]
        final = done[-1] if done else None
        lines.append(
            f"{model:<14} {len(rows):>6} {len(done):>5} {len(rows) - len(done):>6} "
            f"{_fmt(final['test_accuracy'] if final else None):>9} "
            f"{_fmt(max(accs) if accs else None):>8} "
            f"{_fmt(final['test_loss'] if final else None):>10} "
            f"{_mean(r['wall_seconds'] for r in rows):>9.3f} "
            f"{_mean(r['device_busy_seconds'] for r in rows):>9.3f} "
            f"{_mean(r['overhead_seconds'] for r in rows):>13.3f}"
        )
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def write_outputs(report: Mapping[str, Any], out: Path) -> list[Path]:
    """Write report.json and accuracy.png into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "report.json"
    report_path.write_text(json.dumps(report, indent=2))
    plot_path = out / "accuracy.png"
    plot_accuracy(report, plot_path)
    return [report_path, plot_path]


def plot_accuracy(report: Mapping[str, Any], path: Path) -> None:
    """Test accuracy of each model's new version, round by round, as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = accuracy_figure(report)
    fig.savefig(path)
    plt.close(fig)


def accuracy_figure(report: Mapping[str, Any]) -> Figure:
    """The accuracy plot as a matplotlib figure (rounds on x, whole numbers only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for model, rows in report["models"].items():
        points = [
            (r["round"], r["test_accuracy"])
            for r in rows
            if r["outcome"] == "done" and r["test_accuracy"] is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=model)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no round 1.5 on a short run
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy of the new version")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Federated training: held-out test accuracy per round")
    fig.tight_layout()
    return fig
