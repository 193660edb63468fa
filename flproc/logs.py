"""structlog set-up: JSON lines for services, readable lines for a terminal."""

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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def prepare_process(log_format: str = "json", log_level: str = "info") -> None:
    """Start-up of a service process: logging, and heap reuse for large payloads.

    Chunked updates and partials allocate megabyte buffers; glibc's default
    hands those out as fresh mmaps that page-fault on first touch (about 10x
    the cost of the codec itself here). See ``flproc.tuning``.
    """
    from flproc.tuning import reuse_heap_buffers

    configure_logging(log_format, log_level)
    reuse_heap_buffers()
