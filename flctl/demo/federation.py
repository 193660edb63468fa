"""Every role of a demo run, wired in this process on the run's buses.

The coordinator, one aggregator per hospital, the selector replicas and the
device population are the real ones, built through each role's own ``build``
(its composition root) exactly as ``flctl coordinator|aggregator|selector|devices``
build them, only sharing one event loop. Devices train one at a time on one
thread beside the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flcore.signing import Signer, TrustedKeys
from flctl.demo.buses import Buses
from flctl.demo.options import DemoOptions
from flproc.clock import wall_ms
from flproc.errors import SettingError
from flsim.attack import Attack
from flsim.errors import ShardCapacityError
from flsim.experiment import Experiment
from flsim.population import Population
from flsim.shards import ShardedPopulation
from flstore import ModelStore
from modelzoo import get_spec
from services.aggregator.app import build as build_aggregator
from services.aggregator.config import AggregatorConfig
from services.coordinator.app import build as build_coordinator
from services.coordinator.config import CoordinatorConfig
from services.coordinator.coordinator import Coordinator
from services.coordinator.evaluation import OnnxEvaluator
from services.coordinator.init_weights import read_npz
from services.selector.app import build as build_selector
from services.selector.config import EligibilityPolicy, SelectorConfig


@dataclass
class Federation:
    """The running roles of one demo: each a task, stopped together by ``stop``."""

    coordinator: Coordinator
    population: Population | ShardedPopulation
    selectors: list[Any]
    tasks: list[asyncio.Task[None]]
    stop: asyncio.Event

    def spans(self) -> list[tuple[int, int]]:
        """When some device was training: (start, end) in wall milliseconds."""
        return self.population.spans()

    def poisoned(self) -> int:
        """Poisoned updates the attackers uploaded (0 without attackers)."""
        return self.population.poisoned()

    async def ready(self) -> None:
        """Wait until every selector serves devices and every device listens for plans
        (a failed role stops the wait): a round opened before the devices in worker
        processes have connected would be abandoned with nobody admitted."""
        waits = [asyncio.create_task(s.ready.wait()) for s in self.selectors]
        try:
            while not all(w.done() for w in waits) or self.population.subscribed() < len(
                self.population
            ):
                await asyncio.wait(waits, timeout=0.2)
                self._raise_if_failed()
        finally:
            for w in waits:
                w.cancel()

    async def train(self, watch: Callable[[], None]) -> None:
        """Run the coordinator's rounds to the end, calling ``watch`` every 0.2 s and last."""
        run = asyncio.create_task(self.coordinator.run(self.stop), name="coordinator")
        self.tasks.append(run)
        while not run.done():
            await asyncio.wait(
                [run, *[t for t in self.tasks if t is not run]],
                timeout=0.2,
                return_when=asyncio.FIRST_EXCEPTION,
            )
            watch()
            self._raise_if_failed()
        watch()

    def _raise_if_failed(self) -> None:
        failed = [t for t in self.tasks if t.done() and t.exception() is not None]
        if failed:
            raise RuntimeError(f"{failed[0].get_name()} failed") from failed[0].exception()


def coordinator_config(
    opts: DemoOptions, experiment: Experiment, work: Path, init_weights: dict[str, Path]
) -> CoordinatorConfig:
    """The coordinator's settings for this run (artifacts under ``work``).

    Every role runs in this process, so the signing key is an ephemeral pair drawn
    for the run: the demo works with no flags, and its devices still adopt only
    what this run's coordinator signed.
    """
    return CoordinatorConfig(
        models=opts.models,
        hospitals=experiment.hospitals(),
        rounds=opts.rounds,
        population=experiment.population(),
        artifacts_dir=work / "artifacts",
        init_weights=init_weights,
        seed=opts.seed,
        tick_ms=10,
        signing_key=Signer.from_seed(secrets.token_bytes(32)),
    )


@contextlib.asynccontextmanager
async def federation(
    opts: DemoOptions,
    experiment: Experiment,
    config: CoordinatorConfig,
    buses: Buses,
    store: ModelStore,
    work: Path,
) -> AsyncIterator[Federation]:
    """Build and start every role but the coordinator's rounds; stop them all on exit."""
    secret = secrets.token_bytes(32)
    if config.signing_key is None:
        raise SettingError("signing_key", "the demo's coordinator config has no signing key")
    pinned = config.signing_key.trusted()
    stop = asyncio.Event()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device-training")
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
                    hospitals=tuple(experiment.hospitals()),
                ),
                await buses.pubsub_for(f"selector-{i}"),
                await buses.log_for(f"selector-{i}"),
                wall_ms,
            )
            selectors.append(sel)
            tasks.append(asyncio.create_task(sel.run(stop), name=f"selector-{i}"))
        population = make_population(opts, experiment, buses, work, executor, pinned)
        if opts.brokers == "memory":
            await buses.pubsub_for("devices")
        tasks.append(asyncio.create_task(population.run(stop), name="devices"))
        yield Federation(coordinator, population, selectors, tasks, stop)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        executor.shutdown(wait=True)


def attack_of(opts: DemoOptions) -> Attack | None:
    """The run's attackers (None: a clean run); ``boost`` aims at the round's clip norm."""
    if not opts.attackers:
        return None
    return Attack(opts.attackers, opts.attack, opts.seed, opts.rounds.clip_norm)


def make_population(
    opts: DemoOptions,
    experiment: Experiment,
    buses: Buses,
    work: Path,
    executor: ThreadPoolExecutor,
    pinned: TrustedKeys,
) -> Population | ShardedPopulation:
    """In memory, devices share this process; on real brokers they run in worker processes.

    Every device pins ``pinned``, the demo coordinator's public key."""
    common: dict[str, Any] = {
        "coordinator_key": pinned,
        "attack": attack_of(opts),
        "dropout": opts.dropout,
        "availability": opts.availability,
        "seed": opts.seed,
        "week_seconds": opts.week_seconds,
        # Plans, tasks and answers arrive as messages; the tick only retries
        # deferred check-ins. 50 ms woke 1,000 devices 20,000 times a second.
        "poll_interval_s": 0.25,
        "synthetic": opts.synthetic,
    }
    if opts.brokers == "memory":
        return Population.from_partition(
            experiment.partitions, buses.pubsub, work / "devices", executor=executor,
            manage_buses=False, clock=wall_ms, storage="memory", **common,
        )  # fmt: skip
    assert buses.mqtt_url is not None
    try:
        return ShardedPopulation.plan(
            experiment.partitions, buses.mqtt_url, work / "devices",
            workers=opts.device_workers, setup=opts.device_setup, **common,
        )  # fmt: skip
    except ShardCapacityError as exc:
        raise SettingError("device_workers", str(exc)) from None


def init_weights_for(opts: DemoOptions) -> dict[str, Path]:
    """Which model ``--init-weights`` belongs to: the one whose parameter names it holds."""
    if opts.init_weights is None:
        return {}
    names = set(read_npz(opts.init_weights, "init_weights"))
    for model in opts.models:
        if set(get_spec(model).param_manifest().names) <= names:
            return {model: opts.init_weights}
    expected = "; ".join(
        f"{model}: {get_spec(model).param_manifest().describe()}" for model in opts.models
    )
    raise SettingError(
        "init_weights",
        f"{opts.init_weights} holds {sorted(names)}, which are not all the parameters of any "
        f"model of the run. Expected, by model: {expected}",
    )
