"""``flctl devices``: run a simulated device population against a real MQTT broker.

Its settings (:data:`SETTINGS`) live here, not in the device SDK: an app that
embeds the SDK configures its one device in code. The split settings
(:data:`SPLIT`) are the ones ``flctl coordinator`` and ``flctl demo`` read too,
so every role derives the same split from the same names.
"""

from __future__ import annotations

import argparse
from typing import Any

from flbus.errors import BusError
from flproc.errors import SettingError
from flproc.health import run_service
from flproc.parsers import Range, integer, number, path
from flproc.settings import (
    EXIT_BAD_SETTING,
    LOG_FORMAT,
    MQTT_URL,
    Setting,
    Subparsers,
    add_settings,
    resolve,
)
from flproc.startup import start
from flsim.errors import ShardCapacityError, ShardDiedError
from flsim.experiment import make_experiment
from flsim.population import AVAILABILITIES
from flsim.shards import MAX_DEVICES_PER_SHARD, ShardedPopulation, shard_count
from services.common.settings import HOSPITALS
from services.coordinator.config import MODELS, SEED

NAME, PROG = "devices", "flctl devices"

DEVICES_PER_HOSPITAL = Setting(
    "devices_per_hospital", "--devices-per-hospital", "FL_DEVICES_PER_HOSPITAL",
    "devices in each hospital of the seeded split", integer(Range(1)), "10",
)  # fmt: skip
ALPHA = Setting(
    "alpha", "--alpha", "FL_ALPHA",
    "Dirichlet concentration of the non-IID split (smaller: more skewed)",
    number(Range(0, low_open=True)), "0.5",
)  # fmt: skip
SPLIT: tuple[Setting, ...] = (
    HOSPITALS.but(help="hospitals of the split: a count (3 = h0,h1,h2) or the ids h0,h1,..."),
    DEVICES_PER_HOSPITAL,
    ALPHA,
    SEED,
)
"""The seeded split every role derives: hospitals, devices per hospital, alpha, seed."""

DROPOUT = Setting("dropout", "--dropout", "FL_DROPOUT", "probability a device vanishes mid-round",
                  number(Range(0, 1)), "0")  # fmt: skip
AVAILABILITY = Setting(
    "availability", "--availability", "FL_AVAILABILITY",
    "always, or nights: devices train on a few compressed nights a week",
    default="always", choices=AVAILABILITIES,
)  # fmt: skip

SETTINGS: tuple[Setting, ...] = (
    MQTT_URL,
    *SPLIT,
    MODELS.but(help="models installed on every device, comma separated"),
    DROPOUT,
    AVAILABILITY,
    Setting("week_seconds", "--week-seconds", "FL_WEEK_SECONDS",
            "wall seconds one simulated week lasts (nights availability)",
            number(Range(0, low_open=True)), "60"),
    Setting("max_slowdown", "--max-slowdown", "FL_MAX_SLOWDOWN",
            "devices train up to this many times slower (uniform in [1, x])",
            number(Range(1)), "1"),
    Setting("workers", "--workers", "FL_DEVICE_WORKERS",
            "worker processes the devices are sharded over (0: one per core, more if the devices "
            f"need it; a process holds at most {MAX_DEVICES_PER_SHARD} devices)",
            integer(Range(0)), "0"),
    Setting("synthetic", "--synthetic", "FL_SYNTHETIC_UPDATES",
            "upload random updates of the model's size instead of training (benchmarks)",
            default="off", choices=("off", "on")),
    Setting("storage_dir", "--storage-dir", "FL_DEVICE_STORAGE",
            "per-device stores, ledgers and artifacts (beside the other local state)",
            path, ".fl/devices"),
)  # fmt: skip
"""Every setting of a simulated device population, in ``--help`` order."""

LOGGING = (LOG_FORMAT.but(default="console"),)


def register(subparsers: Subparsers) -> None:
    """Add ``flctl devices``."""
    p = subparsers.add_parser(
        NAME,
        help="run a simulated device population (the device SDK) against an MQTT broker",
        description="K simulated devices sharded over worker processes, each a real "
        "device_sdk.Device with its own MQTT session (client id = device id), its Dirichlet "
        "shard of the bundled data, availability windows, dropout and slower/faster training. "
        "Exit codes: 0 stopped, 1 a worker process died (named on stderr), 2 a bad setting "
        "(an unreachable broker is retried).",
    )
    add_settings(p, (*SETTINGS, *LOGGING))
    p.set_defaults(handler=run_devices)


def population_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The population's settings from flags, ``FL_*`` variables and defaults."""
    values = resolve(args, SETTINGS)
    try:
        shard_count(len(values["hospitals"]) * values["devices_per_hospital"], values["workers"])
    except ShardCapacityError as exc:
        raise SettingError("workers", str(exc)) from None
    hospitals = values["hospitals"]
    if hospitals != HOSPITALS.read(str(len(hospitals))):
        raise SettingError(
            "hospitals",
            f"the split names them h0..h{len(hospitals) - 1}, got {','.join(hospitals)}",
        )
    return values


def run_devices(args: argparse.Namespace) -> int:
    """Build the population from the settings and run it until SIGINT/SIGTERM."""
    from modelzoo.ort_compat import quiet_native_warnings

    settings = start(NAME, args, SETTINGS, lambda: population_settings(args), logging=LOGGING,
                     prog=PROG)  # fmt: skip
    if settings is None:
        return EXIT_BAD_SETTING
    quiet_native_warnings()
    # The split every role derives from the same settings (flctl coordinator too).
    partitions = make_experiment(
        settings["models"],
        hospitals=len(settings["hospitals"]),
        devices_per_hospital=settings["devices_per_hospital"],
        alpha=settings["alpha"],
        seed=settings["seed"],
    ).partitions

    population = ShardedPopulation.plan(
        partitions,
        settings["mqtt_url"],
        settings["storage_dir"],
        workers=settings["workers"],
        dropout=settings["dropout"],
        availability=settings["availability"],
        seed=settings["seed"],
        week_seconds=settings["week_seconds"],
        max_slowdown=settings["max_slowdown"],
        synthetic=settings["synthetic"] == "on",
    )
    return run_service(NAME, population.run, (BusError, ShardDiedError), prog=PROG)
