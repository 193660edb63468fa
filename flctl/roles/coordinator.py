"""``flctl coordinator``: run the coordinator on a real Kafka until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from flbus.errors import BusError
from flctl.roles.devices import ALPHA, DEVICES_PER_HOSPITAL
from flproc.clock import wall_ms
from flproc.errors import SettingError
from flproc.health import Liveness, run_service
from flproc.parsers import path
from flproc.settings import (
    EXIT_BAD_SETTING,
    KAFKA_BOOTSTRAP,
    LOGGING,
    Setting,
    Subparsers,
    add_settings,
    resolve,
)
from flproc.startup import start
from flsim.experiment import make_experiment
from modelzoo import Dataset
from services.common.settings import KAFKA_AUTH, kafka_credentials
from services.coordinator.config import ROUND_SETTINGS, SETTINGS, CoordinatorConfig

if TYPE_CHECKING:
    from services.coordinator.evaluation import OnnxEvaluator

NAME, PROG = "coordinator", "flctl coordinator"

PARTITION = Setting(
    "partition", "--partition", "FL_PARTITION",
    "partition spec JSON {dataset, test, devices:[{hospital, device, train}]} instead of the "
    "seeded Dirichlet split", path,
)  # fmt: skip

#: What the process needs besides its config: the bus, the registry, the held-out split.
PROCESS: tuple[Setting, ...] = (
    KAFKA_BOOTSTRAP,
    *KAFKA_AUTH,
    Setting("store_dir", "--store-dir", "FL_STORE_DIR",
            "model registry directory (versions, weights, lineage)", path, ".fl/models"),
    PARTITION.but(help="partition spec JSON: its test rows are the held-out test set "
                  "(default: the seeded split flctl devices uses)"),
    DEVICES_PER_HOSPITAL.but(help="devices per hospital of the seeded split (as flctl devices)"),
    ALPHA.but(help="Dirichlet concentration of the seeded split (as flctl devices)"),
)  # fmt: skip


def register(subparsers: Subparsers) -> None:
    """Add ``flctl coordinator``."""
    p = subparsers.add_parser(
        NAME,
        help="run the coordinator (rounds, master aggregation, model registry)",
        description="Open rounds for each model, combine the hospitals' partial aggregates "
        "with the server optimizer, score and store every version, announce it on Kafka. "
        "Exit codes: 0 stopped, 1 a bus failed, 2 a bad setting.",
    )
    add_settings(p, (*SETTINGS, *ROUND_SETTINGS, *PROCESS, *LOGGING))
    p.set_defaults(handler=main)


def held_out_sets(process: dict[str, Any], config: CoordinatorConfig) -> dict[str, Dataset]:
    """Held-out test rows per model, from the very split the devices were given.

    ``flctl devices`` and the demo split the data with ``flsim.experiment``; the
    coordinator derives the same split from the same settings (or the partition
    spec), so it never scores a version on rows a device trained on. A spec
    that does not fit raises SettingError naming ``partition``.
    """
    try:
        experiment = make_experiment(
            config.models,
            hospitals=len(config.hospitals),
            devices_per_hospital=process["devices_per_hospital"],
            alpha=process["alpha"],
            seed=config.seed,
            partition_file=process["partition"],
        )
    except (ValueError, OSError) as e:  # ExperimentError is a ValueError
        raise SettingError("partition", str(e)) from None
    return {m: experiment.test_set(m) for m in config.models}


def config_from_args(args: argparse.Namespace) -> CoordinatorConfig:
    """The validated config from flags, ``FL_*`` variables and defaults (raises SettingError)."""
    return CoordinatorConfig.from_settings(resolve(args, (*SETTINGS, *ROUND_SETTINGS)))


def main(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; exit 2 on a bad setting, 1 on a bus failure."""

    def prepare() -> tuple[CoordinatorConfig, dict[str, Any], OnnxEvaluator]:
        from services.coordinator.evaluation import OnnxEvaluator

        config, process = config_from_args(args), resolve(args, PROCESS)
        process["kafka_credentials"] = kafka_credentials(process)
        return config, process, OnnxEvaluator(held_out_sets(process, config))

    ready = start(NAME, args, (*SETTINGS, *ROUND_SETTINGS, *PROCESS), prepare, prog=PROG)
    if ready is None:
        return EXIT_BAD_SETTING
    config, process, evaluator = ready
    liveness = Liveness()
    return run_service(
        NAME,
        lambda stop: _serve(process, config, evaluator, stop, liveness),
        (BusError,),
        prog=PROG,
        liveness=liveness,
    )


async def _serve(
    process: dict[str, Any],
    config: CoordinatorConfig,
    evaluator: OnnxEvaluator,
    stop: asyncio.Event,
    liveness: Liveness,
) -> None:
    from flbus.kafka import KafkaBus
    from flstore import FileModelStore
    from services.coordinator.app import build

    credentials = process["kafka_credentials"]
    async with KafkaBus(
        process["kafka_bootstrap"], client_id="coordinator", credentials=credentials
    ) as bus:
        coordinator = build(config, bus, FileModelStore(process["store_dir"]), evaluator, wall_ms)
        liveness.add(coordinator.problem)
        await coordinator.run(stop)
