"""Exceptions of the selector service.

Rejected device messages are data (``AuditEvent``), never exceptions. Exceptions
mean the service cannot run as configured::

    SelectorError
    └── SelectorConfigError   a setting is invalid; ``.setting`` names it
"""

from __future__ import annotations


class SelectorError(Exception):
    """Base class of every selector error."""


class SelectorConfigError(SelectorError, ValueError):
    """A configuration setting is invalid; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem
