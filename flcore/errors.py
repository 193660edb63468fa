"""Exceptions of the pure core.

Rejected updates and declined devices are *data* (``Rejection``, ``RetryAfter``),
never exceptions. Exceptions mean a caller broke a contract: a bad hyper-parameter or argument,
arrays of the wrong size, an impossible request. Settings of a process (flags,
``FL_*`` variables) are not the core's business: a role's configuration turns
an :class:`InvalidParameter` into ``flproc.errors.SettingError`` naming the
setting.

Hierarchy::

    FlcoreError
    ├── InvalidParameter      (also ValueError) bad hyper-parameter, argument or unknown name
    ├── SizeMismatch          (also ValueError) vectors of different lengths were combined
    ├── EmptyAggregate        a weighted mean was asked of nothing (total weight 0)
    └── NonFiniteVersion      combining made weights or metrics that are not finite
"""

from __future__ import annotations


class FlcoreError(Exception):
    """Base class of every error raised by flcore."""


class InvalidParameter(FlcoreError, ValueError):
    """A hyper-parameter, argument or name is invalid; the message names it."""


class SizeMismatch(FlcoreError, ValueError):
    """Two flat vectors that must have the same length do not."""


class EmptyAggregate(FlcoreError):
    """A weighted mean was requested but nothing (or only zero weight) was folded in."""


class NonFiniteVersion(FlcoreError):
    """A close step made weights or metrics that are NaN or infinite: it is never kept."""
