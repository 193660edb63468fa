"""``flctl devices``: run a simulated device population against a real MQTT broker.

Its settings (:data:`SETTINGS`) live here, not in the device SDK: an app that
embeds the SDK configures its one device in code. The split settings
(:data:`SPLIT`) are the ones ``flctl coordinator`` and ``flctl demo`` read too,
so every role derives the same split from the same names.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from flbus.errors import BusError
from flctl.provision.credentials import DeviceCredential, read_credentials, with_credentials
from flproc.errors import SettingError
from flproc.health import run_service
from flproc.parsers import Range, integer, names, number, path
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
from flsim.partition import Partition
from flsim.population import AVAILABILITIES
from flsim.shards import MAX_DEVICES_PER_SHARD, ShardedPopulation, shard_count
from services.common.settings import COORDINATOR_KEY, HOSPITALS
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
    COORDINATOR_KEY,
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
    Setting("credentials", "--credentials", "FL_DEVICE_CREDENTIALS",
            "device hand-outs of `flctl provision` (devices/<hospital>.csv, comma separated): "
            "run only the devices listed, each connecting with its own username and password",
            lambda raw: [path(p) for p in names(raw)]),
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
    try:  # an empty list (FL_DEVICE_CREDENTIALS=",") means none, not "run no device"
        listed = values["credentials"]
        values["credentials"] = read_credentials(listed) if listed else None
    except ValueError as exc:
        raise SettingError("credentials", str(exc)) from None
    return values


def credentialed(
    partitions: dict[str, Partition], creds: dict[str, DeviceCredential] | None
) -> dict[str, Partition]:
    """The split cut down to the devices with credentials (all of it without any).

    Raises SettingError when a hand-out names a device the split does not have:
    its hospitals or devices per hospital differ from what was provisioned.
    """
    if creds is None:
        return partitions
    known = {shard.device for p in partitions.values() for shard in p.devices}
    strangers = sorted(set(creds) - known)
    if strangers:
        raise SettingError(
            "credentials",
            f"devices {', '.join(strangers[:5])} are not in the split; "
            "check --hospitals and --devices-per-hospital",
        )
    return {
        model: dataclasses.replace(p, devices=tuple(s for s in p.devices if s.device in creds))
        for model, p in partitions.items()
    }


def run_devices(args: argparse.Namespace) -> int:
    """Build the population from the settings and run it until SIGINT/SIGTERM."""
    from modelzoo.ort_compat import quiet_native_warnings

    def build() -> tuple[dict[str, Any], dict[str, Partition]]:
        values = population_settings(args)
        # The split every role derives from the same settings (flctl coordinator too).
        split = make_experiment(
            values["models"],
            hospitals=len(values["hospitals"]),
            devices_per_hospital=values["devices_per_hospital"],
            alpha=values["alpha"],
            seed=values["seed"],
        ).partitions
        return values, credentialed(split, values["credentials"])

    built = start(NAME, args, SETTINGS, build, logging=LOGGING, prog=PROG)
    if built is None:
        return EXIT_BAD_SETTING
    settings, partitions = built
    quiet_native_warnings()
    creds: dict[str, DeviceCredential] | None = settings["credentials"]
    urls = None
    if creds is not None:
        urls = {
            device: with_credentials(settings["mqtt_url"], c.username, c.password)
            for device, c in creds.items()
        }
    # The shards log as the role does (its device events are the role's record).
    log_format = resolve(args, LOGGING)["log_format"]
    population = ShardedPopulation.plan(
        partitions,
        settings["mqtt_url"],
        settings["storage_dir"],
        log_format=log_format,
        log_level="info",
        workers=settings["workers"],
        device_urls=urls,
        coordinator_key=settings["coordinator_key"],
        dropout=settings["dropout"],
        availability=settings["availability"],
        seed=settings["seed"],
        week_seconds=settings["week_seconds"],
        max_slowdown=settings["max_slowdown"],
        synthetic=settings["synthetic"] == "on",
    )
    return run_service(NAME, population.run, (BusError, ShardDiedError), prog=PROG)
