"""Errors of the coordinator::

CoordinatorError
├── ConfigError   a setting is missing or invalid (names the setting)
└── StoreError    the model store cannot give or take a version
"""


class CoordinatorError(Exception):
    """Base class of the coordinator's errors."""


class ConfigError(CoordinatorError):
    """A setting is missing or invalid."""


class StoreError(CoordinatorError):
    """The model store cannot give or take a version."""
