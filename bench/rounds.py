"""End-to-end rounds over real brokers: the demo's federation on a fresh local stack.

Each run starts a local Mosquitto and Kafka (``flctl demo --brokers local``),
the coordinator, two selectors and one aggregator per hospital in this
process, and the devices sharded over worker processes, then runs ``rounds``
rounds with the default round settings. With ``synthetic`` the devices upload
random updates of the model's size (no ONNX Runtime), so the figures are the
system's: check-ins, chunked uploads through MQTT, the bridge into Kafka, the
fold. The bench models (``bench_mlp_100k``, ``bench_mlp_1m``: digits MLPs
with a wide hidden layer) are registered in the zoo of this process and of
every device worker; they exist for this bench only.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TextIO, cast

from bench.suite import PeakRss
from flctl.demo import DemoOptions, run_demo
from modelzoo import graphs
from modelzoo.registry import MODELS, ModelSpec, get_spec
from services.coordinator.config import RoundSettings

BENCH_MODELS = {"bench_mlp_100k": 1_330, "bench_mlp_1m": 13_333}  # hidden width -> ~params


def register_models() -> None:
    """Put the bench models in this process's zoo (idempotent; also run in device workers)."""
    for name, hidden in BENCH_MODELS.items():
        MODELS.setdefault(
            name,
            ModelSpec(
                name=name,
                input_shape=(64,),
                classes=10,
                builder=partial(graphs.build_mlp, name, (64, hidden, 10)),
                has_reference=False,
                description=f"bench only: MLP 64-{hidden}-10 for sklearn digits",
                dataset="digits",
            ),
        )


def params_of(model: str) -> int:
    """Trainable parameters of a zoo (or bench) model."""
    return get_spec(model).param_manifest().total_size


def largest_zoo_model() -> str:
    """The zoo's model with the most parameters (bench models aside)."""
    shipped = [m for m in MODELS if m not in BENCH_MODELS]
    return max(shipped, key=params_of)


def hospitals_for(devices: int) -> int:
    """Hospitals that split ``devices`` evenly: 3 if they can, else 4, 5, 2 or 1."""
    return next(h for h in (3, 4, 5, 2, 1) if devices % h == 0)


class TimedLines(io.TextIOBase):
    """The demo's progress stream: each line with the time it arrived; broker pids noted."""

    def __init__(self, rss: PeakRss) -> None:
        self.lines: list[tuple[float, str]] = []
        self._rss = rss

    def write(self, s: str) -> int:
        """Keep every line with its arrival time."""
        now = time.perf_counter()
        for line in s.splitlines():
            self.lines.append((now, line))
            found = re.match(r"(mosquitto|kafka) starting \(pid (\d+)", line)
            if found:
                self._rss.pids[found.group(1)] = int(found.group(2))
        return len(s)

    def first(self, pattern: str) -> float | None:
        """When the first line matching ``pattern`` arrived."""
        return next((t for t, line in self.lines if re.search(pattern, line)), None)


@dataclass
class RoundsResult:
    """What one run measured."""

    model: str
    devices: int
    params: int
    rounds: list[dict[str, object]]
    ready_s: float  # brokers up, roles built, every device listening
    first_round_s: float | None  # from the start to the first completed round
    rss_mb: dict[str, float] = field(default_factory=dict)
    shards: int = 0

    @property
    def done(self) -> list[dict[str, object]]:
        """Rounds that completed."""
        return [r for r in self.rounds if r["outcome"] == "done"]

    def steady_s(self) -> float | None:
        """Mean wall time of the completed rounds after the first (round 1 installs artifacts)."""
        walls = [float(str(r["wall_seconds"])) for r in self.done[1:] or self.done]
        return statistics.fmean(walls) if walls else None

    def reported(self) -> float:
        """Mean updates folded per completed round."""
        per = [sum(h["reported"] for h in r["per_hospital"].values()) for r in self.done]  # type: ignore[attr-defined]
        return statistics.fmean(per) if per else 0.0

    def outcome(self) -> str:
        """``3/3 done`` or what went wrong."""
        text = f"{len(self.done)}/{len(self.rounds)} done"
        bad = [r for r in self.rounds if r["outcome"] != "done"]
        return text + (f"; {str(bad[0].get('reason', ''))[:80]}" if bad else "")


def run_rounds(model: str, devices: int, *, synthetic: bool, rounds: int = 3) -> RoundsResult:
    """Run ``rounds`` rounds of ``model`` on ``devices`` devices over a fresh local stack."""
    register_models()
    hospitals = hospitals_for(devices)
    opts = DemoOptions(
        models=(model,),
        hospitals=hospitals,
        devices=devices // hospitals,
        rounds=RoundSettings(rounds=rounds),
        brokers="local",
        synthetic=synthetic,
        device_setup=register_models,
    )
    rss = PeakRss({"roles": os.getpid()})
    stream = TimedLines(rss)
    began = time.perf_counter()
    with rss:
        report = asyncio.run(run_demo(opts, progress_stream=cast(TextIO, stream)))
    ready = stream.first(r"^demo: ")
    first = stream.first(r" round +\d+/\d+ done ")
    devices_totals = report["run"]["devices"]
    rss.peaks["devices"] = int(devices_totals.get("peak_rss_bytes", 0))
    return RoundsResult(
        model=model,
        devices=devices,
        params=params_of(model),
        rounds=report["models"][model],
        ready_s=(ready or began) - began,
        first_round_s=None if first is None else first - began,
        rss_mb={k: round(v / 1e6, 1) for k, v in rss.peaks.items()},
        shards=int(devices_totals.get("shards", 0)),
    )
