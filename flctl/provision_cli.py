"""``flctl provision``: write a deployment's identities into a secrets directory.

Prints what to hand to whom, naming files; never a password.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flproc.errors import SettingError
from flproc.parsers import Range, integer, path
from flproc.settings import EXIT_BAD_SETTING, MQTT_URL, Setting, Subparsers, add_settings, explain
from flproc.settings import resolve as resolve_settings
from services.common.settings import HOSPITALS


def _root(raw: str) -> Path | None:
    if not raw.strip():
        return None
    if not path(raw).is_absolute():
        raise ValueError(f"must be an absolute path, got {raw!r}")
    return path(raw)


OUT = Setting("out", "--out", "FL_PROVISION_OUT",
              "directory to write (refused if it exists, unless --force)", path,
              "./secrets")  # fmt: skip
ROOT = Setting("root", "--root", "FL_PROVISION_ROOT",
               "where the roles will find the directory, for the paths in services/*.env "
               "(e.g. /secrets, where compose mounts it; default: --out itself)",
               _root, "")  # fmt: skip
SETTINGS: tuple[Setting, ...] = (
    OUT,
    ROOT,
    HOSPITALS,
    Setting("devices_per_hospital", "--devices-per-hospital", "FL_DEVICES_PER_HOSPITAL",
            "device identities per hospital (ids <hospital>-d0, -d1, ... as flctl devices)",
            integer(Range(1)), "10"),
    MQTT_URL.but(help="the MQTT broker as services and devices reach it, without credentials "
                 "(mqtts://...: services verify it with tls/ca.pem)"),
)  # fmt: skip


def register(subparsers: Subparsers) -> None:
    """Add ``flctl provision``."""
    p = subparsers.add_parser(
        "provision",
        help="create device and service identities, broker password file and ACLs",
        description="Write per-device and per-service credentials, Mosquitto's password "
        "file and ACL, Kafka's SASL users, the coordinator's signing key pair, FL_* env "
        "files per service instance and, with --tls, a CA with the broker's certificate."
        " `flctl brokers up --secure DIR` reads them. Exit codes: "
        "0 written, 1 not written (the directory exists), 2 a bad setting.",
    )
    add_settings(p, SETTINGS)
    p.add_argument("--tls", action="store_true", help="also make a CA and the broker's cert")
    p.add_argument("--force", action="store_true",
                   help="replace an existing directory this command wrote before")  # fmt: skip
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Write the directory and print its summary."""
    from flctl.provision import ProvisionError, provision

    try:
        v = resolve_settings(args, SETTINGS)
    except SettingError as exc:
        print(f"flctl provision: {explain(exc, SETTINGS)}", file=sys.stderr)
        return EXIT_BAD_SETTING
    try:
        done = provision(
            Path(v["out"]),
            v["hospitals"],
            v["devices_per_hospital"],
            mqtt_url=v["mqtt_url"],
            tls=args.tls,
            root=v["root"],
            force=args.force,
        )
    except ProvisionError as exc:
        print(f"flctl provision: {exc}", file=sys.stderr)
        return 1
    print(done.summary())
    return 0
