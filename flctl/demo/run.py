"""``flctl demo``: a whole federated training, every role in one process.

On the in-memory buses by default (nothing to install), on a local Mosquitto
and Kafka started for the run (``--brokers local``), or on brokers the user
already runs (``--mqtt URL --kafka BOOTSTRAP``). Every role is the real one:
coordinator, selector replicas, one aggregator per hospital, and a population
of SDK devices training with ONNX Runtime.

The roles keep files (training artifacts, device state, the local brokers'
data) in a work directory: ``DemoOptions.work_dir`` or ``<out>/work`` when the
user asked to keep the run, else a temporary one removed when the run ends.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from flctl.demo.buses import open_buses
from flctl.demo.federation import coordinator_config, federation, init_weights_for
from flctl.demo.options import DemoOptions
from flctl.demo.progress import Progress
from flctl.report import build_report
from flsim.experiment import make_experiment
from flstore import FileModelStore, MemoryModelStore, ModelStore
from modelzoo.ort_compat import quiet_native_warnings


@contextlib.contextmanager
def work_dir(opts: DemoOptions) -> Iterator[Path]:
    """Where the roles keep files: kept where the user named one, else removed after."""
    if opts.work_dir is not None:
        yield opts.work_dir
    elif opts.out is not None:
        yield opts.out / "work"
    else:
        with tempfile.TemporaryDirectory(prefix="fl-demo-", ignore_cleanup_errors=True) as tmp:
            yield Path(tmp)


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
    init_weights = init_weights_for(opts)
    store: ModelStore = FileModelStore(opts.out / "models") if opts.out else MemoryModelStore()
    started = time.perf_counter()
    with work_dir(opts) as work:
        config = coordinator_config(opts, experiment, work, init_weights)
        async with (
            open_buses(opts, say, work / "brokers") as buses,
            federation(opts, experiment, config, buses, store, work) as fed,
        ):
            await fed.ready()
            say(
                f"demo: {len(fed.population)} devices in {len(experiment.hospitals())} "
                f"hospitals, models {', '.join(opts.models)}, brokers {opts.brokers}"
            )
            display = Progress(progress_stream, fed.spans)
            await fed.train(lambda: display.update(fed.coordinator))
    histories = {name: m.history for name, m in fed.coordinator.models.items()}
    return build_report(
        histories,
        spans=fed.spans(),
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
            "aggregation": opts.rounds.aggregation,
            "trim_fraction": opts.rounds.trim_fraction,
            "attackers": opts.attackers,
            "attack": opts.attack if opts.attackers else None,
            "poisoned_uploads": fed.poisoned(),
            "alpha": opts.alpha,
            "seed": opts.seed,
            "availability": opts.availability,
            "partition": str(opts.partition) if opts.partition else None,
            "init_weights": str(opts.init_weights) if opts.init_weights else None,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "devices": fed.population.totals(),
            "overhead_note": "overhead = round wall time minus the time during which some "
            "device was training (devices train one at a time on one thread, so with several "
            "models a round's wall time also holds the other models' training)",
        },
    )
