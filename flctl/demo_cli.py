"""``flctl demo``: the command line of the federated training demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from flcore.errors import InvalidParameter
from flctl.roles.coordinator import add_round_options, round_settings
from flproc.logs import prepare_process
from flproc.options import Subparsers, env_option
from flsim.errors import ExperimentError
from modelzoo import ZooError
from services.coordinator.errors import ConfigError


def register(subparsers: Subparsers) -> None:
    """Add ``flctl demo``."""
    p = subparsers.add_parser(
        "demo",
        help="run a whole federated training in one process (no brokers needed)",
        description="Train models across simulated hospitals and devices with the real "
        "coordinator, selectors, hospital aggregators and SDK devices (ONNX Runtime "
        "training). Shows a line per finished round and a summary table; with --out, "
        "writes report.json and accuracy.png.",
        epilog="Examples:\n  flctl demo\n  flctl demo --brokers local --rounds 5\n"
        "  flctl demo --mqtt mqtt://127.0.0.1:1883 --kafka 127.0.0.1:9092\n"
        "  flctl demo --models digits_mlp --server-optimizer fedadam --out out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    opt = env_option
    opt(
        p,
        "--brokers",
        env="FL_DEMO_BROKERS",
        default="memory",
        help="memory: in-process buses; local: start a local Mosquitto and Kafka for the run",
    )
    opt(p, "--mqtt", env="FL_MQTT_URL", help="use this running MQTT broker (with --kafka)")
    opt(p, "--kafka", env="FL_KAFKA_BOOTSTRAP", help="use this running Kafka (with --mqtt)")
    opt(
        p,
        "--models",
        env="FL_MODELS",
        default="digits_mlp,breast_cancer",
        help="zoo models to train side by side (digits_mlp, digits_cnn, breast_cancer)",
    )
    opt(p, "--hospitals", env="FL_DEMO_HOSPITALS", type=int, default=3, help="hospitals")
    opt(p, "--devices", env="FL_DEMO_DEVICES", type=int, default=10,
        help="devices per hospital")  # fmt: skip
    # FedAdam: plain FedAvg needs ~3x the rounds on this non-IID split (bench.accuracy).
    add_round_options(p, round_timeout=10.0, selection_window=2.0, server_optimizer="fedadam")
    opt(
        p,
        "--alpha",
        env="FL_ALPHA",
        type=float,
        default=0.5,
        help="Dirichlet concentration of the non-IID split (smaller: more skewed)",
    )
    opt(p, "--seed", env="FL_SEED", type=int, default=0, help="seed of splits and weights")
    opt(p, "--partition", env="FL_PARTITION",
        help="JSON split {dataset, test, devices:[{hospital, device, train}]} instead of "
        "the Dirichlet one")  # fmt: skip
    opt(
        p,
        "--init-weights",
        env="FL_INIT_WEIGHTS",
        help=".npz of initial parameters by name, for the model whose parameters it holds",
    )
    opt(p, "--dropout", env="FL_DROPOUT", type=float, default=0.0,
        help="probability a device vanishes mid-round")  # fmt: skip
    opt(
        p,
        "--availability",
        env="FL_AVAILABILITY",
        default="always",
        help="always, or nights: devices train on a few compressed nights a week",
    )
    opt(p, "--selectors", env="FL_DEMO_SELECTORS", type=int, default=2,
        help="selector replicas on one shared subscription")  # fmt: skip
    opt(p, "--out", env="FL_DEMO_OUT", help="write report.json, accuracy.png and the registry")
    opt(p, "--log-level", env="FL_LOG_LEVEL", default="warning",
        help="service log lines shown (debug, info, warning)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no per-round progress lines")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run the demo; exit 2 on bad input (with the reason), 1 if a role failed."""
    from flctl.demo import DemoOptions, run_demo
    from flctl.report import summary_table, write_outputs

    prepare_process("console", args.log_level)
    brokers = args.brokers
    if args.mqtt or args.kafka:
        brokers = "external"
    try:
        opts = DemoOptions(
            models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
            hospitals=args.hospitals,
            devices=args.devices,
            rounds=round_settings(args),
            alpha=args.alpha,
            seed=args.seed,
            partition=Path(args.partition) if args.partition else None,
            init_weights=Path(args.init_weights) if args.init_weights else None,
            dropout=args.dropout,
            availability=args.availability,
            selectors=args.selectors,
            brokers=brokers,
            mqtt_url=args.mqtt,
            kafka_bootstrap=args.kafka,
            out=Path(args.out) if args.out else None,
        )
        report = asyncio.run(run_demo(opts, progress_stream=None if args.quiet else sys.stderr))
    except (ValueError, ConfigError, InvalidParameter, ExperimentError, OSError, ZooError) as e:
        print(f"flctl demo: {e}", file=sys.stderr)
        return 2
    print(summary_table(report))
    if opts.out:
        for path in write_outputs(report, opts.out):
            print(f"wrote {path}")
    return 0
