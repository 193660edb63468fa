"""``flctl bench``: a thin alias of ``python -m bench`` (the suite's one table).

The suite sits above the command line (it drives the demo), so ``flctl`` does
not import it: it runs it as ``python -m bench`` in a child process with the
same arguments and returns its exit code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from flproc.settings import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add ``flctl bench``."""
    p = subparsers.add_parser(
        "bench",
        help="run the benchmark suite over real brokers and print one table (python -m bench)",
        description="Every figure beside a reference measured in the same run; every "
        "argument (--quick, --only ROW, --devices 30,300,1000, --help) goes to the suite.",
        add_help=False,
        prefix_chars="+",  # so that --quick, --help... reach the suite untouched
    )
    p.add_argument("suite_args", nargs=argparse.REMAINDER, help="passed to python -m bench")
    p.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run ``python -m bench`` with the given arguments; its exit code is ours."""
    suite = [sys.executable, "-m", "bench", *args.suite_args]
    return subprocess.run(suite, check=False).returncode
