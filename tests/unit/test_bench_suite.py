"""The bench suite's table and its optional rows; ``flctl bench`` hands everything to it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.suite import NOT_AVAILABLE, Row, optional_rows, render

pytestmark = pytest.mark.unit


def test_optional_rows_of_an_absent_module_say_not_available() -> None:
    (row,) = optional_rows("bench.no_such_bench", quick=True)
    assert (row.row, row.figure) == ("bench.no_such_bench", NOT_AVAILABLE)


def test_optional_rows_of_a_module_without_suite_rows_say_so() -> None:
    (row,) = optional_rows("bench.suite", quick=True)
    assert row.figure == NOT_AVAILABLE and "suite_rows" in row.note


def test_render_puts_each_figure_beside_its_reference() -> None:
    text = render([Row("a long row name", "1.5", "ref 3.0", "why"), Row("b", "22", "ref 4")])
    head, _, first, second = text.splitlines()
    assert first.index("1.5") == second.index("22") == head.index("figure")
    assert first.index("ref 3.0") == second.index("ref 4") == head.index("reference")


def test_flctl_bench_passes_every_argument_to_the_suite() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from flctl.main import main; sys.exit(main())",
         "bench", "--quick", "--only", "nope"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert "python -m bench: error: unknown rows ['nope']" in out.stderr
