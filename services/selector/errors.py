"""Exceptions of the selector service.

Rejected device messages are data (``AuditEvent``), never exceptions. Exceptions
mean the service cannot run as configured::

    SelectorError

An invalid setting raises ``flproc.errors.SettingError`` (the one settings
error of every role), naming the :class:`~services.selector.config.SelectorConfig`
field.
"""

from __future__ import annotations


class SelectorError(Exception):
    """Base class of every selector error."""
