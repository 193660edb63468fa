"""``flctl demo``: a whole federated training, every role in one process.

On the in-memory buses by default (nothing to install), on a local Mosquitto
and Kafka started for the run (``--brokers local``), or on brokers the user
already runs (``--mqtt URL --kafka BOOTSTRAP``). Every role is the real one:
coordinator, selector replicas, one aggregator per hospital, and a population
of SDK devices training with ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
import structlog

from flbus.memory import MemoryBus
from flbus.port import LogBus, PubSubBus
from flctl.report import build_report, busy_seconds, round_row
from flproc.clock import wall_ms
from flsim.errors import ExperimentError
from flsim.experiment import make_experiment
from flsim.population import Population
from modelzoo import get_spec
from modelzoo.ort_compat import quiet_native_warnings
from services.aggregator.app import build as build_aggregator
from services.aggregator.config import AggregatorConfig
from services.coordinator.app import build as build_coordinator
from services.coordinator.config import CoordinatorConfig, RoundSettings
from services.coordinator.coordinator import Coordinator
from services.coordinator.evaluation import OnnxEvaluator
from services.coordinator.model_rounds import RoundSummary
from services.coordinator.store import FileModelStore, MemoryModelStore, ModelStore
from services.selector.app import build as build_selector
from services.selector.config import EligibilityPolicy, SelectorConfig

log = structlog.get_logger("demo")
B = TypeVar("B", LogBus, PubSubBus)


@dataclass(frozen=True)
class DemoOptions:
    """Everything a demo run depends on."""

    models: tuple[str, ...] = ("digits_mlp", "breast_cancer")
    hospitals: int = 3
    devices: int = 10  # per hospital
    rounds: RoundSettings = field(default_factory=RoundSettings)
    alpha: float = 0.5
    seed: int = 0
    partition: Path | None = None
    init_weights: Path | None = None
    dropout: float = 0.0
    availability: str = "always"
    week_seconds: float = 60.0
    selectors: int = 2
    brokers: str = "memory"  # memory | local | external
    mqtt_url: str | None = None
    kafka_bootstrap: str | None = None
    out: Path | None = None
    work_dir: Path | None = None
    stop_hospitals: tuple[str, ...] = ()  # aggregators not started (fault drill)

    def __post_init__(self) -> None:
        if self.brokers not in ("memory", "local", "external"):
            raise ValueError(f"brokers must be memory, local or external, got {self.brokers!r}")
        if self.brokers == "external" and not (self.mqtt_url and self.kafka_bootstrap):
            raise ValueError("external brokers need both --mqtt and --kafka")
        if self.rounds.rounds < 1:
            raise ValueError("a demo needs --rounds >= 1")
        if self.out is not None and any((self.out / "models").glob("*/v*.json")):
            raise ValueError(
                f"{self.out / 'models'} already holds a model registry from an earlier run; "
                "choose another --out or remove it"
            )
        if self.hospitals < 1 or self.devices < 1 or self.selectors < 1:
            raise ValueError("hospitals, devices and selectors must be >= 1")
        if not 0 <= self.dropout <= 1:
            raise ValueError(f"dropout must be in [0, 1], got {self.dropout}")


@dataclass
class Buses:
    """How each role gets its bus: shared in-memory ones, or one client per role."""

    pubsub: Callable[[str], PubSubBus]
    log: Callable[[str], LogBus]
    started: list[Any] = field(default_factory=list)

    async def log_for(self, name: str) -> LogBus:
        """A started log bus for role ``name``."""
        return await self._started(self.log(name))

    async def pubsub_for(self, name: str) -> PubSubBus:
        """A started pub/sub bus for role ``name``."""
        return await self._started(self.pubsub(name))

    async def _started(self, bus: B) -> B:
        if bus not in self.started:  # the in-memory buses are shared by every role
            await bus.start()
            self.started.append(bus)
        return bus


@contextlib.asynccontextmanager
async def open_buses(opts: DemoOptions, progress: Callable[[str], None]) -> AsyncIterator[Buses]:
    """The buses of the run; local brokers are started for it and stopped after."""
    if opts.brokers == "memory":
        memory = MemoryBus()
        buses = Buses(lambda _: memory.pubsub, lambda _: memory.log)
        try:
            yield buses
        finally:
            await memory.stop()
        return
    from flbus.kafka import KafkaBus
    from flbus.mqtt import MqttBus

    local = None
    mqtt_url, kafka = opts.mqtt_url, opts.kafka_bootstrap
    if opts.brokers == "local":
        from flctl.brokers import LocalBrokers, free_port

        data_dir = Path(tempfile.mkdtemp(prefix="fl-demo-brokers-"))
        local = LocalBrokers(
            free_port(), free_port(), data_dir, kafka_controller_port=free_port(), progress=progress
        )
        endpoints = await asyncio.to_thread(local.up, 180.0)
        mqtt_url, kafka = endpoints.mqtt_url, endpoints.kafka_bootstrap
    assert mqtt_url and kafka
    run = secrets.token_hex(3)
    buses = Buses(
        lambda name: MqttBus(mqtt_url, client_id=f"{name}-{run}"),
        lambda name: KafkaBus(kafka, client_id=name),
    )
    try:
        yield buses
    finally:
        for bus in reversed(buses.started):
            with contextlib.suppress(Exception):
                await bus.stop()
        if local is not None:
            await asyncio.to_thread(local.down)


def _init_weights_for(opts: DemoOptions) -> dict[str, Path]:
    """Which model ``--init-weights`` belongs to: the one whose parameter names it holds."""
    if opts.init_weights is None:
        return {}
    with np.load(opts.init_weights) as data:
        names = set(data.files)
    for model in opts.models:
        if set(get_spec(model).param_manifest().names) <= names:
            return {model: opts.init_weights}
    raise ExperimentError(
        f"{opts.init_weights}: holds {sorted(names)}, which are not all the parameters of any "
        f"of {list(opts.models)}"
    )


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


async def run_demo(
    opts: DemoOptions, *, progress_stream: TextIO | None = sys.stderr
) -> dict[str, Any]:
    """Run the whole federated training and return its report (``opts.out`` holds the registry)."""
    say: Callable[[str], None] = (
        (lambda line: print(line, file=progress_stream, flush=True))
        if progress_stream
        else (lambda line: None)
    )
    quiet_native_warnings()
    # Every role's event loop shares this process with the device-training thread; a
    # shorter GIL switch interval lets the loop answer while a device trains.
    sys.setswitchinterval(0.0005)
    experiment = make_experiment(
        opts.models,
        hospitals=opts.hospitals,
        devices_per_hospital=opts.devices,
        alpha=opts.alpha,
        seed=opts.seed,
        partition_file=opts.partition,
    )
    init_weights = _init_weights_for(opts)
    work = Path(opts.work_dir or tempfile.mkdtemp(prefix="fl-demo-"))
    secret = secrets.token_bytes(32)
    store: ModelStore = FileModelStore(opts.out / "models") if opts.out else MemoryModelStore()
    config = CoordinatorConfig(
        models=opts.models,
        hospitals=experiment.hospitals(),
        rounds=opts.rounds,
        population=experiment.population(),
        artifacts_dir=work / "artifacts",
        init_weights=init_weights,
        seed=opts.seed,
        tick_ms=10,
    )
    stop = asyncio.Event()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device-training")
    started = time.perf_counter()
    async with open_buses(opts, say) as buses:
        tasks: list[asyncio.Task[None]] = []
        try:
            coordinator = build_coordinator(
                config,
                await buses.log_for("coordinator"),
                store,
                OnnxEvaluator({m: experiment.test_set(m) for m in opts.models}),
                wall_ms,
            )
            for hospital in experiment.hospitals():
                if hospital in opts.stop_hospitals:
                    continue
                agg = build_aggregator(
                    AggregatorConfig(
                        hospital=hospital, token_secret=secret, tick_ms=10, catch_up_idle_ms=200
                    ),
                    await buses.log_for(f"aggregator-{hospital}"),
                    wall_ms,
                )
                tasks.append(asyncio.create_task(agg.run(stop), name=f"aggregator-{hospital}"))
            selectors = []
            for i in range(opts.selectors):
                sel = build_selector(
                    SelectorConfig(
                        token_secret=secret,
                        eligibility=EligibilityPolicy(),
                        no_round_retry_ms=1_000,
                        retry_jitter_ms=1_000,
                    ),
                    await buses.pubsub_for(f"selector-{i}"),
                    await buses.log_for(f"selector-{i}"),
                    wall_ms,
                )
                selectors.append(sel)
                tasks.append(asyncio.create_task(sel.run(stop), name=f"selector-{i}"))
            population = Population.from_partition(
                experiment.partitions,
                buses.pubsub,
                work / "devices",
                dropout=opts.dropout,
                availability=opts.availability,
                seed=opts.seed,
                executor=executor,
                week_seconds=opts.week_seconds,
                manage_buses=opts.brokers != "memory",
                clock=wall_ms,
                poll_interval_s=0.05,
            )
            if opts.brokers == "memory":
                await buses.pubsub_for("devices")
            tasks.append(asyncio.create_task(population.run(stop), name="devices"))
            await _ready(selectors, tasks)
            run = asyncio.create_task(coordinator.run(stop), name="coordinator")
            tasks.append(run)

            def spans() -> list[tuple[int, int]]:
                return [sp for dev in population.devices for sp in dev.stats.training_spans]

            display = Progress(progress_stream, spans)
            say(
                f"demo: {len(population.devices)} devices in {len(experiment.hospitals())} "
                f"hospitals, models {', '.join(opts.models)}, brokers {opts.brokers}"
            )
            while not run.done():
                await asyncio.wait(
                    [run, *[t for t in tasks if t is not run]],
                    timeout=0.2,
                    return_when=asyncio.FIRST_EXCEPTION,
                )
                display.update(coordinator)
                failed = [t for t in tasks if t.done() and t.exception() is not None]
                if failed:
                    raise RuntimeError(f"{failed[0].get_name()} failed") from failed[0].exception()
            display.update(coordinator)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            executor.shutdown(wait=True)
    histories = {name: m.history for name, m in coordinator.models.items()}
    report = build_report(
        histories,
        spans=spans(),
        run={
            "models": list(opts.models),
            "hospitals": list(experiment.hospitals()),
            "devices_per_hospital": experiment.population(),
            "brokers": opts.brokers,
            "rounds": opts.rounds.rounds,
            "local_epochs": opts.rounds.local_epochs,
            "batch_size": opts.rounds.batch_size,
            "lr": opts.rounds.learning_rate,
            "fraction": opts.rounds.fraction,
            "server_optimizer": opts.rounds.server_optimizer,
            "dropout": opts.dropout,
            "alpha": opts.alpha,
            "seed": opts.seed,
            "availability": opts.availability,
            "partition": str(opts.partition) if opts.partition else None,
            "init_weights": str(opts.init_weights) if opts.init_weights else None,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "devices": population.totals(),
            "overhead_note": "overhead = round wall time minus the time during which some "
            "device was training (devices train one at a time on one thread, so with several "
            "models a round's wall time also holds the other models' training)",
        },
    )
    return report


async def _ready(selectors: list[Any], tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every selector serves devices (a failed role stops the wait)."""
    waits = [asyncio.create_task(s.ready.wait()) for s in selectors]
    try:
        while not all(w.done() for w in waits):
            await asyncio.wait(waits, timeout=0.2)
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise RuntimeError(f"{failed[0].get_name()} failed") from failed[0].exception()
    finally:
        for w in waits:
            w.cancel()
