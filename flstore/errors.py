"""Errors raised by the model stores.

Every store raises only these; the file store turns ``OSError`` and unreadable
files into them at one place (``flstore.files._translated``)::

    StoreError                the model store cannot give or take a version
    ├── VersionExists         the version was stored before (versions are immutable)
    ├── VersionNotFound       (also LookupError) no such version, or no ONNX model stored with it
    └── StorageFailed         the medium failed: a file could not be written or read (names it)
"""


class StoreError(Exception):
    """Base class of every model store error."""


class VersionExists(StoreError):
    """A version with this model and number was stored before; versions are immutable."""


class VersionNotFound(StoreError, LookupError):
    """No such version of the model (or no ONNX model was stored with it)."""


class StorageFailed(StoreError):
    """The storage medium failed; the message names the path and the cause."""
