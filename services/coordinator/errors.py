"""Errors of the coordinator::

    CoordinatorError
    └── StoreError    the model store cannot give or take a version

An invalid setting raises ``flproc.errors.SettingError`` (the one settings
error of every role) naming the config field; the core's
``flcore.errors.InvalidParameter`` is turned into one where the config is
checked.
"""


class CoordinatorError(Exception):
    """Base class of the coordinator's errors."""


class StoreError(CoordinatorError):
    """The model store cannot give or take a version."""
