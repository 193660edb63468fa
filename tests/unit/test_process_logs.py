"""Library log lines (aiokafka, paho) render like ours: JSON in services, quiet on a terminal."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from flproc.logs import LIBRARIES, configure_logging

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _restore_standard_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lib_level in levels.items():
        logging.getLogger(name).setLevel(lib_level)


def test_configure_logging_json_renders_library_errors_as_json_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "info")

    logging.getLogger("aiokafka").error("Unable connect to %s", "mqtt://u:hunter2@h:1")

    line = capsys.readouterr().err.strip()
    record = json.loads(line)
    assert record["logger"] == "aiokafka" and record["level"] == "error"
    assert "hunter2" not in line


def test_configure_logging_console_drops_library_errors_our_command_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("console", "warning")

    logging.getLogger("aiokafka").error("Unable connect to 127.0.0.1:2")
    logging.getLogger("aiokafka").critical("the process cannot go on")

    err = capsys.readouterr().err
    assert "Unable connect" not in err
    assert "the process cannot go on" in err
