"""``flctl coordinator``: run the coordinator on a real Kafka until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from flcore.errors import InvalidParameter
from flproc.clock import wall_ms
from flproc.health import run_service
from flproc.logs import prepare_process
from flproc.options import Subparsers, env_option
from flsim.experiment import hospital_ids, make_experiment
from modelzoo import Dataset
from services.coordinator.config import CoordinatorConfig, RoundSettings
from services.coordinator.errors import ConfigError

if TYPE_CHECKING:
    from services.coordinator.evaluation import OnnxEvaluator

_log = structlog.get_logger("coordinator")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in raw.split(",") if x.strip())


def _population(raw: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in _csv(raw):
        name, _, count = item.partition("=")
        out[name] = int(count)
    return out


def add_round_options(
    p: argparse.ArgumentParser,
    *,
    round_timeout: float = 30.0,
    selection_window: float = 5.0,
    server_optimizer: str = "fedavg",
) -> None:
    """The round hyper-parameters, shared by ``flctl coordinator`` and ``flctl demo``."""
    opt = env_option
    opt(p, "--rounds", env="FL_ROUNDS", type=int, default=30,
        help="rounds per model (0: forever)")  # fmt: skip
    opt(p, "--local-epochs", env="FL_LOCAL_EPOCHS", type=int, default=1,
        help="local epochs per device per round")  # fmt: skip
    opt(p, "--max-steps", env="FL_MAX_STEPS", type=int, default=0,
        help="cap on local SGD steps per round (0: no cap)")  # fmt: skip
    opt(p, "--batch-size", env="FL_BATCH_SIZE", type=int, default=32, help="local batch size")
    opt(p, "--lr", env="FL_LR", type=float, default=0.1, help="device SGD learning rate")
    opt(p, "--fraction", env="FL_FRACTION", type=float, default=1.0,
        help="devices per round as a fraction of the eligible ones")  # fmt: skip
    opt(p, "--over-selection", env="FL_OVER_SELECTION", type=float, default=1.3,
        help="admit this many times the goal, to absorb dropouts")  # fmt: skip
    opt(p, "--server-optimizer", env="FL_SERVER_OPTIMIZER", default=server_optimizer,
        help="fedavg, fedadam, fedyogi or fedadagrad")  # fmt: skip
    opt(p, "--server-lr", env="FL_SERVER_LR", type=float,
        help="server learning rate (default: the optimizer's)")  # fmt: skip
    opt(p, "--clip-norm", env="FL_CLIP_NORM", type=float, default=0.0,
        help="L2 bound on each device update (0: off)")  # fmt: skip
    opt(p, "--noise-multiplier", env="FL_NOISE_MULTIPLIER", type=float, default=0.0,
        help="central Gaussian noise in units of --clip-norm (0: off)")  # fmt: skip
    opt(p, "--round-timeout", env="FL_ROUND_TIMEOUT", type=float, default=round_timeout,
        help="seconds before a round closes on the hospitals that reported")  # fmt: skip
    opt(p, "--selection-window", env="FL_SELECTION_WINDOW", type=float, default=selection_window,
        help="seconds a round admits devices")  # fmt: skip
    opt(p, "--close-grace", env="FL_CLOSE_GRACE", type=float, default=1.0,
        help="seconds past the deadline to wait for partials")  # fmt: skip
    opt(p, "--min-fraction", env="FL_MIN_FRACTION", type=float, default=0.5,
        help="share of the goal (updates and hospitals) a round needs to close")  # fmt: skip


def round_settings(args: argparse.Namespace) -> RoundSettings:
    """RoundSettings from the shared round options."""
    return RoundSettings(
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        clip_norm=args.clip_norm,
        noise_multiplier=args.noise_multiplier,
        fraction=args.fraction,
        over_selection=args.over_selection,
        min_hospital_fraction=args.min_fraction,
        min_update_fraction=args.min_fraction,
        selection_window_ms=int(args.selection_window * 1000),
        round_timeout_ms=int(args.round_timeout * 1000),
        close_grace_ms=int(args.close_grace * 1000),
        server_optimizer=args.server_optimizer,
        server_lr=args.server_lr,
    )


def register(subparsers: Subparsers) -> None:
    """Add ``flctl coordinator``."""
    p = subparsers.add_parser(
        "coordinator",
        help="run the coordinator (rounds, master aggregation, model registry)",
        description="Open rounds for each model, combine the hospitals' partial aggregates "
        "with the server optimizer, score and store every version, announce it on Kafka.",
    )
    opt = env_option
    opt(p, "--kafka-bootstrap", env="FL_KAFKA_BOOTSTRAP", default="127.0.0.1:9092",
        help="Kafka bootstrap servers")  # fmt: skip
    opt(p, "--models", env="FL_MODELS", default="digits_mlp,breast_cancer",
        help="zoo models to train, comma separated")  # fmt: skip
    opt(p, "--hospitals", env="FL_HOSPITALS", default="h0,h1,h2",
        help="hospital ids, comma separated, or a count (3 = h0,h1,h2)")  # fmt: skip
    opt(
        p,
        "--population",
        env="FL_POPULATION",
        default="",
        help="expected devices per hospital, e.g. h0=10,h1=10 (default: learnt from check-ins)",
    )
    add_round_options(p)
    opt(p, "--store-dir", env="FL_STORE_DIR", default=".fl/models",
        help="model registry directory (versions, weights, lineage)")  # fmt: skip
    opt(p, "--artifacts-dir", env="FL_ARTIFACTS_DIR", default=".fl/artifacts",
        help="where ORT training artifacts are generated")  # fmt: skip
    opt(p, "--partition", env="FL_PARTITION", help="partition spec JSON: its test rows are the "
        "held-out test set (default: the seeded split flctl devices uses)")  # fmt: skip
    opt(p, "--devices-per-hospital", env="FL_DEVICES_PER_HOSPITAL", type=int, default=10,
        help="devices per hospital of the seeded split (as for flctl devices)")  # fmt: skip
    opt(p, "--alpha", env="FL_ALPHA", type=float, default=0.5,
        help="Dirichlet concentration of the seeded split (as for flctl devices)")  # fmt: skip
    opt(p, "--seed", env="FL_SEED", type=int, default=0, help="seed of initial weights and splits")
    opt(p, "--log-format", env="FL_LOG_FORMAT", default="json", help="json or console")
    opt(p, "--log-level", env="FL_LOG_LEVEL", default="info", help="debug, info, warning...")
    p.set_defaults(handler=main)


def held_out_sets(args: argparse.Namespace, config: CoordinatorConfig) -> dict[str, Dataset]:
    """Held-out test rows per model, from the very split the devices were given.

    ``flctl devices`` and the demo split the data with ``flsim.experiment``; the
    coordinator derives the same split from the same flags (or the partition
    spec), so it never scores a version on rows a device trained on.
    """
    experiment = make_experiment(
        config.models,
        hospitals=len(config.hospitals),
        devices_per_hospital=args.devices_per_hospital,
        alpha=args.alpha,
        seed=config.seed,
        partition_file=Path(args.partition) if args.partition else None,
    )
    return {m: experiment.test_set(m) for m in config.models}


def config_from_args(args: argparse.Namespace) -> CoordinatorConfig:
    """Build and validate the configuration; ConfigError names the bad setting."""
    try:
        return CoordinatorConfig(
            models=_csv(args.models),
            hospitals=hospital_ids(args.hospitals),
            rounds=round_settings(args),
            population=_population(args.population),
            artifacts_dir=Path(args.artifacts_dir),
            seed=args.seed,
        )
    except (ValueError, InvalidParameter) as e:
        raise ConfigError(str(e)) from None


def main(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; exit 2 on a bad setting, 1 on a bus failure."""
    prepare_process(args.log_format, args.log_level)
    from services.coordinator.evaluation import OnnxEvaluator

    try:
        config = config_from_args(args)
        evaluator = OnnxEvaluator(held_out_sets(args, config))
    except (ConfigError, ValueError, OSError) as e:  # ExperimentError is a ValueError
        _log.error("coordinator.config_invalid", problem=str(e))
        return 2
    return run_service("coordinator", lambda stop: _serve(args, config, evaluator, stop))


async def _serve(
    args: argparse.Namespace,
    config: CoordinatorConfig,
    evaluator: OnnxEvaluator,
    stop: asyncio.Event,
) -> None:
    from flbus.kafka import KafkaBus
    from services.coordinator.app import build
    from services.coordinator.store import FileModelStore

    async with KafkaBus(args.kafka_bootstrap, client_id="coordinator") as bus:
        coordinator = build(
            config,
            bus,
            FileModelStore(Path(args.store_dir)),
            evaluator,
            wall_ms,
        )
        await coordinator.run(stop)
