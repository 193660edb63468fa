"""Errors of the aggregator service.

Rejected updates are data (``AuditEvent``), never exceptions. Exceptions mean
the service cannot run::

    AggregatorError
    └── SettingError   (also ValueError) a setting is invalid; ``.setting`` names it
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Base class of every error raised by the aggregator service."""


class SettingError(AggregatorError, ValueError):
    """A configuration setting is invalid; the message names it (flag and env var)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
