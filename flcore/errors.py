"""Exceptions of the pure core.

Rejected updates and declined devices are *data* (``Rejection``, ``RetryAfter``),
never exceptions. Exceptions mean a caller broke a contract: bad configuration,
arrays of the wrong size, an impossible request.

Hierarchy::

    FlcoreError
    ├── ConfigError           (also ValueError) bad hyper-parameter or unknown name
    ├── SizeMismatch          (also ValueError) vectors of different lengths were combined
    └── EmptyAggregate        a weighted mean was asked of nothing (total weight 0)
"""

from __future__ import annotations


class FlcoreError(Exception):
    """Base class of every error raised by flcore."""


class ConfigError(FlcoreError, ValueError):
    """A hyper-parameter, name or setting is invalid; the message names it."""


class SizeMismatch(FlcoreError, ValueError):
    """Two flat vectors that must have the same length do not."""


class EmptyAggregate(FlcoreError):
    """A weighted mean was requested but nothing (or only zero weight) was folded in."""
