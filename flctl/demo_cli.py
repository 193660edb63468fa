"""``flctl demo``: the command line of the federated training demo.

Exit codes: 0 trained, 1 a bus or a local broker failed (one line naming it),
2 a bad setting or input (one line naming the flag and variable).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from flbus.errors import BusError
from flctl.roles.coordinator import PARTITION
from flctl.roles.devices import ALPHA, AVAILABILITY, DEVICES_PER_HOSPITAL, DROPOUT
from flproc.errors import SettingError
from flproc.health import EXIT_BUS_FAILED, failure_among
from flproc.logs import prepare_process
from flproc.parsers import Range, integer, number, path
from flproc.redaction import redact
from flproc.settings import (
    EXIT_BAD_SETTING,
    KAFKA_BOOTSTRAP,
    LOG_LEVEL,
    MQTT_URL,
    Setting,
    Subparsers,
    add_settings,
    amend,
    explain,
    resolve,
)
from flsim.attack import ATTACKS
from flsim.errors import SimulationError
from modelzoo import ZooError, model_names
from services.coordinator.config import MODELS, ROUND_SETTINGS, SEED, RoundSettings

if TYPE_CHECKING:
    from flctl.demo import DemoOptions

PROG = "flctl demo"
DEMO_LOG_LEVEL = LOG_LEVEL.but(default="warning", help="service log lines shown")

# The demo's rounds are the coordinator's, with a finite count and shorter timeouts.
DEMO_ROUNDS = amend(
    amend(
        amend(ROUND_SETTINGS, "rounds", parse=integer(Range(1)),
              help="rounds per model; the demo runs a finite count (>= 1; flctl coordinator "
              "also takes 0 = forever)"),
        "round_timeout_ms", default="10"),
    "selection_window_ms", default="2",
)  # fmt: skip

SETTINGS: tuple[Setting, ...] = (
    Setting("brokers", "--brokers", "FL_DEMO_BROKERS",
            "memory: in-process buses; local: start a local Mosquitto and Kafka for the run",
            default="memory", choices=("memory", "local")),
    MQTT_URL.but(flag="--mqtt", default=None, help="use this running MQTT broker (with --kafka)"),
    KAFKA_BOOTSTRAP.but(flag="--kafka", default=None,
                        help="use this running Kafka (with --mqtt)"),
    MODELS.but(help=f"zoo models to train side by side ({', '.join(model_names())})"),
    Setting("hospitals", "--hospitals", "FL_DEMO_HOSPITALS", "hospitals",
            integer(Range(1)), "3"),
    DEVICES_PER_HOSPITAL,
    *DEMO_ROUNDS,
    ALPHA,
    SEED.but(help="seed of splits and weights"),
    PARTITION,
    Setting("init_weights", "--init-weights", "FL_INIT_WEIGHTS",
            ".npz of initial parameters by name (numpy.savez), for the model whose names it "
            "holds, e.g. digits_mlp: fc1.weight [64, 32], fc1.bias [32], fc2.weight [32, 10], "
            "fc2.bias [10]; a file that fits no model is refused with every model's list", path),
    DROPOUT,
    AVAILABILITY,
    Setting("attackers", "--attackers", "FL_DEMO_ATTACKERS",
            "share of the devices that send poisoned updates (poisoning drill; 0: none)",
            number(Range(0, 1)), "0"),
    Setting("attack", "--attack", "FL_DEMO_ATTACK",
            "what attackers send: sign_flip (update x -1), scale (x -10) or boost (reversed, "
            "at 99% of --clip-norm)",
            default="sign_flip", choices=tuple(sorted(ATTACKS))),
    Setting("selectors", "--selectors", "FL_DEMO_SELECTORS",
            "selector replicas on one shared subscription", integer(Range(1)), "2"),
    Setting("device_workers", "--device-workers", "FL_DEVICE_WORKERS",
            "real brokers: worker processes the devices are sharded over (0: one per core, "
            "more if the devices need it)", integer(Range(0)), "0"),
    Setting("out", "--out", "FL_DEMO_OUT",
            "write report.json, accuracy.png and the registry here", path),
    DEMO_LOG_LEVEL,
)  # fmt: skip
"""Every setting of ``flctl demo``, in ``--help`` order."""


def register(subparsers: Subparsers) -> None:
    """Add ``flctl demo``."""
    p = subparsers.add_parser(
        "demo",
        help="run a whole federated training in one process (no brokers needed)",
        description="Train models across simulated hospitals and devices with the real "
        "coordinator, selectors, hospital aggregators and SDK devices (ONNX Runtime "
        "training). Shows a line per finished round and a summary table; with --out, "
        "writes report.json and accuracy.png. Exit codes: 0 trained, 1 a broker failed, "
        "2 a bad setting.",
        epilog="Examples:\n  flctl demo\n  flctl demo --brokers local --rounds 5\n"
        "  flctl demo --mqtt mqtt://127.0.0.1:1883 --kafka 127.0.0.1:9092\n"
        "  flctl demo --models digits_mlp --server-optimizer fedavg --out out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings(p, SETTINGS)
    p.add_argument("--quiet", action="store_true", help="no per-round progress lines")
    p.set_defaults(handler=main)


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """The demo's options from flags, ``FL_*`` variables and defaults (raises SettingError)."""
    from flctl.demo import DemoOptions

    v = resolve(args, SETTINGS)
    external = v["mqtt_url"] is not None or v["kafka_bootstrap"] is not None
    return DemoOptions(
        models=v["models"],
        hospitals=v["hospitals"],
        devices=v["devices_per_hospital"],
        rounds=RoundSettings.from_settings(v),
        alpha=v["alpha"],
        seed=v["seed"],
        partition=v["partition"],
        init_weights=v["init_weights"],
        dropout=v["dropout"],
        availability=v["availability"],
        attackers=v["attackers"],
        attack=v["attack"],
        selectors=v["selectors"],
        brokers="external" if external else v["brokers"],
        mqtt_url=v["mqtt_url"],
        kafka_bootstrap=v["kafka_bootstrap"],
        out=v["out"],
        device_workers=v["device_workers"],
    )


def main(args: argparse.Namespace) -> int:
    """Run the demo; exit 2 on a bad setting or input, 1 if a broker failed."""
    from flctl.brokers import BrokerError
    from flctl.demo import run_demo
    from flctl.report import summary_table, write_outputs

    def fail(line: str, code: int) -> int:
        print(f"{PROG}: {redact(line)}", file=sys.stderr, flush=True)
        return code

    try:
        prepare_process("console", resolve(args, (DEMO_LOG_LEVEL,))["log_level"])
        opts = options_from_args(args)
        report = asyncio.run(run_demo(opts, progress_stream=None if args.quiet else sys.stderr))
    except BaseException as exc:
        bad = failure_among(exc, (SettingError,))
        if isinstance(bad, SettingError):
            return fail(explain(bad, SETTINGS), EXIT_BAD_SETTING)
        if (broken := failure_among(exc, (BusError, BrokerError))) is not None:
            return fail(str(broken), EXIT_BUS_FAILED)
        wrong = failure_among(exc, (ValueError, SimulationError, OSError, ZooError))
        if wrong is None:
            raise
        return fail(str(wrong), EXIT_BAD_SETTING)
    print(summary_table(report))
    if opts.out:
        for path_ in write_outputs(report, opts.out):
            print(f"wrote {path_}")
    return 0
