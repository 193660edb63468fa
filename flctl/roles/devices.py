"""``flctl devices``: run a simulated device population against a real MQTT broker."""

from __future__ import annotations

import argparse
import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flproc.health import run_service
from flproc.logs import prepare_process
from flproc.options import env_option
from flsim.experiment import hospital_ids, make_experiment
from flsim.population import AVAILABILITIES, Population

Subparsers = Any


def _models(text: str) -> tuple[str, ...]:
    from modelzoo.registry import get_spec

    names = tuple(m.strip() for m in text.split(",") if m.strip())
    if not names:
        raise argparse.ArgumentTypeError("--models needs at least one model name")
    for name in names:
        try:
            get_spec(name)
        except Exception as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def register(subparsers: Subparsers) -> None:
    """Add ``flctl devices``."""
    p = subparsers.add_parser(
        "devices",
        help="run a simulated device population (the device SDK) against an MQTT broker",
        description="K simulated devices in one process, each a real device_sdk.Device with "
        "its own MQTT session (client id = device id), its Dirichlet shard of the bundled "
        "data, availability windows, dropout and slower/faster training.",
    )
    env_option(
        p,
        "--mqtt-url",
        env="FL_MQTT_URL",
        default="mqtt://127.0.0.1:1883",
        help="MQTT broker URL (device plane)",
    )
    env_option(
        p,
        "--hospitals",
        env="FL_HOSPITALS",
        default="h0,h1,h2",
        help="hospitals: a count (3 = h0,h1,h2) or the ids h0,h1,... of the split",
    )
    env_option(
        p,
        "--devices-per-hospital",
        env="FL_DEVICES_PER_HOSPITAL",
        type=int,
        default=10,
        help="devices in each hospital",
    )
    env_option(
        p,
        "--models",
        env="FL_MODELS",
        type=_models,
        default="digits_mlp,breast_cancer",
        help="installed models, comma separated",
    )
    env_option(
        p,
        "--alpha",
        env="FL_ALPHA",
        type=float,
        default=0.5,
        help="Dirichlet concentration of the non-IID split",
    )
    env_option(p, "--seed", env="FL_SEED", type=int, default=0, help="split and device seed")
    env_option(
        p,
        "--dropout",
        env="FL_DROPOUT",
        type=_probability,
        default=0.0,
        help="probability a device vanishes mid-round",
    )
    p.add_argument(
        "--availability",
        choices=AVAILABILITIES,
        default=_env_choice("FL_AVAILABILITY", "always"),
        help="always, or some nights a week in compressed time [env FL_AVAILABILITY]",
    )
    env_option(
        p,
        "--week-seconds",
        env="FL_WEEK_SECONDS",
        type=float,
        default=60.0,
        help="wall seconds one simulated week lasts (nights availability)",
    )
    env_option(
        p,
        "--max-slowdown",
        env="FL_MAX_SLOWDOWN",
        type=float,
        default=1.0,
        help="devices train up to this many times slower (uniform in [1, x])",
    )
    env_option(
        p,
        "--workers",
        env="FL_DEVICE_WORKERS",
        type=int,
        default=1,
        help="training threads shared by all devices",
    )
    env_option(
        p,
        "--storage-dir",
        env="FL_DEVICE_STORAGE",
        type=Path,
        default=Path(".fl/devices"),  # beside the other local state, git-ignored
        help="per-device stores, ledgers and artifacts",
    )
    env_option(p, "--log-format", env="FL_LOG_FORMAT", default="console", help="json or console")
    p.set_defaults(handler=run_devices)


def _env_choice(name: str, default: str) -> str:
    import os

    return os.environ.get(name) or default


def run_devices(args: argparse.Namespace) -> int:
    """Build the population from the flags and run it until SIGINT/SIGTERM."""
    from flbus.mqtt import MqttBus
    from modelzoo.ort_compat import quiet_native_warnings

    prepare_process(args.log_format, "info")  # logs, and heap reuse for chunked payloads
    quiet_native_warnings()
    models = args.models if isinstance(args.models, tuple) else _models(args.models)
    hospitals = hospital_ids(args.hospitals)
    if hospitals != hospital_ids(str(len(hospitals))):
        print(f"flctl devices: --hospitals: the split names them h0..h{len(hospitals) - 1}, "
              f"got {','.join(hospitals)}", file=sys.stderr)  # fmt: skip
        return 2
    # The split every role derives from the same flags (flctl coordinator too).
    partitions = make_experiment(
        models,
        hospitals=len(hospitals),
        devices_per_hospital=args.devices_per_hospital,
        alpha=args.alpha,
        seed=args.seed,
    ).partitions
    url = args.mqtt_url

    async def serve(stop: asyncio.Event) -> None:
        with ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="train") as pool:
            population = Population.from_partition(
                partitions,
                lambda device_id: MqttBus(url, client_id=device_id),
                args.storage_dir,
                dropout=args.dropout,
                availability=args.availability,
                seed=args.seed,
                executor=pool,
                week_seconds=args.week_seconds,
                max_slowdown=args.max_slowdown,
            )
            await population.run(stop)

    return run_service("devices", serve)
