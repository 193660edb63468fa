"""Errors of the aggregator service.

Rejected updates are data (``AuditEvent``), never exceptions. Exceptions mean
the service cannot run::

    AggregatorError

An invalid setting raises ``flproc.errors.SettingError`` (the one settings
error of every role), naming the :class:`~services.aggregator.config.AggregatorConfig`
field.
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Base class of every error raised by the aggregator service."""
