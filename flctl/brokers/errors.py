"""Errors of the local broker launcher.

::

    BrokerError                 anything that stops a broker from being had
     +-- ToolMissing            a program is not installed (names it and how to install it)
     +-- PortInUse              another process holds a port we were asked to use
     +-- BrokerStartFailed      the process started but died or did not answer in time
"""

from __future__ import annotations


class BrokerError(RuntimeError):
    """A local broker could not be started, reached or stopped."""


class ToolMissing(BrokerError):
    """A program a broker needs is not installed."""

    def __init__(self, tool: str, hint: str) -> None:
        super().__init__(f"{tool} not found: {hint}")
        self.tool = tool
        self.hint = hint


class PortInUse(BrokerError):
    """A port is held by a process that ``up`` did not start."""


class BrokerStartFailed(BrokerError):
    """A broker process exited or did not answer before the timeout."""
