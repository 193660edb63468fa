"""What a person watching ``flctl demo`` sees while it runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from flctl.report import busy_seconds, round_row
from services.coordinator.coordinator import Coordinator
from services.coordinator.summary import RoundSummary


class Progress:
    """Prints one line per finished round as it happens; on a terminal, also a live
    status line of the open rounds (devices admitted, hospitals reported so far)."""

    def __init__(self, stream: TextIO | None, spans: Callable[[], list[tuple[int, int]]]) -> None:
        self.stream = stream
        self.spans = spans
        self.live = stream is not None and stream.isatty()
        self._seen: dict[str, int] = {}

    def update(self, coordinator: Coordinator) -> None:
        """Print the rounds that finished since the last call, then the open ones' status."""
        if self.stream is None:
            return
        if self.live:
            self.stream.write("\r\x1b[K")  # clear the status line before printing above it
        for name, rounds in coordinator.models.items():
            for s in rounds.history[self._seen.get(name, 0) :]:
                busy = busy_seconds(self.spans(), s.opened_at_ms, s.closed_at_ms)
                self.stream.write(self.line(name, s, rounds.settings.rounds, busy) + "\n")
            self._seen[name] = len(rounds.history)
        if self.live:
            self.stream.write(self.status(coordinator))
        self.stream.flush()

    @staticmethod
    def status(coordinator: Coordinator) -> str:
        """One line for the rounds now open: admitted devices, hospitals reported."""
        parts = []
        for name, rounds in coordinator.models.items():
            s = rounds.summary
            if s is None or s.outcome != "open":
                continue
            reported = len(rounds.reported_hospitals())
            parts.append(
                f"{name} r{s.round_id}: {sum(s.admitted.values())} admitted, "
                f"{reported}/{len(s.goals)} hospitals reported"
            )
        return ("open: " + "; ".join(parts)) if parts else ""

    @staticmethod
    def line(model: str, s: RoundSummary, total: int, busy: float | None = None) -> str:
        """One finished round in words."""
        row = round_row(s, busy)
        hosp = row["per_hospital"].values()
        admitted = sum(h["admitted"] for h in hosp)
        reported = sum(h["reported"] for h in hosp)
        dropped = sum(h["dropped"] for h in hosp)
        acc = row["test_accuracy"]
        scored = f"acc {acc:.4f} loss {row['test_loss']:.4f}" if acc is not None else s.reason
        return (
            f"{model:<14} round {s.round_id:>3}/{total or '-'} {s.outcome:<9} "
            f"admitted {admitted:>3} reported {reported:>3} dropped {dropped:>3}  {scored}  "
            f"wall {row['wall_seconds']:.3f}s overhead {row['overhead_seconds']:.3f}s"
        )
