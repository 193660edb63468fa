"""structlog set-up: JSON lines for services, readable lines for a terminal.

Libraries that log through the standard library (aiokafka, paho) are routed
through the same renderer, so a service's stderr stays one JSON object per
line. On a terminal (``console``) their lines are dropped below CRITICAL
unless the level is ``debug``: every broker failure they report also ends our
own command with one line that names it.
"""

from __future__ import annotations

import logging
import sys

import structlog

from flproc.redaction import redact_event


def configure_logging(log_format: str = "json", log_level: str = "info") -> None:
    """Configure structlog once per process: ``log_format`` is "json" or "console"."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_event,  # a broker URL's password never reaches a log line
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[log_level.upper()]
        ),
        # One write per line (message and newline together): print() writes them
        # separately, and processes sharing one log (a role's device shards) then
        # interleaved their lines, two JSON objects on one line, one event lost.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    quiet = log_format != "json" and log_level.lower() != "debug"
    _route_standard_logging(renderer, quiet)


#: Libraries whose standard-library log lines we render like our own.
LIBRARIES = ("aiokafka", "kafka", "paho", "asyncio")


def _route_standard_logging(renderer: structlog.types.Processor, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                redact_event,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.CRITICAL if quiet else logging.WARNING)


def prepare_process(log_format: str = "json", log_level: str = "info") -> None:
    """Start-up of a service process: logging, and heap reuse for large payloads.

    Chunked updates and partials allocate megabyte buffers; glibc's default
    hands those out as fresh mmaps that page-fault on first touch (about 10x
    the cost of the codec itself here). See ``flproc.tuning``.
    """
    from flproc.tuning import reuse_heap_buffers

    configure_logging(log_format, log_level)
    reuse_heap_buffers()
