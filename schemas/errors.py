"""Errors raised by ``schemas``: one hierarchy, caught by type at the adapters.

::

    SchemaError                      anything wrong with a message on the wire
    ├── DecodeError                  not an Arrow IPC stream: garbage, truncated
    ├── SchemaVersionError           schema version missing, unknown or newer than ours
    ├── UnknownMessageError          message type name not in the registry
    ├── ValidationError              a field is missing, mistyped or out of range
    └── ChunkError                   a chunk cannot be reassembled
        ├── DigestMismatchError      reassembled payload does not match its digest
        ├── InconsistentChunkError   total / sizes disagree within a stream
        └── UnknownStreamError       chunk or query for a stream we do not hold

Every message names the problem (and the field, for ``ValidationError``), so a
consumer loop can record the rejection and carry on with the next message.
"""

from __future__ import annotations


class SchemaError(Exception):
    """Base class of every error raised by ``schemas``."""


class DecodeError(SchemaError):
    """The bytes are not a readable Arrow IPC stream with one record batch."""


class SchemaVersionError(SchemaError):
    """The schema version is missing, malformed, or not one this code supports."""

    def __init__(self, type_name: str, got: str | None, supported: tuple[int, ...]) -> None:
        self.type_name = type_name
        self.got = got
        self.supported = supported
        super().__init__(
            f"{type_name}: schema version {got!r} not supported (supported: "
            f"{', '.join(str(v) for v in supported)})"
        )


class UnknownMessageError(SchemaError):
    """The message type name in the schema metadata is not registered."""


class ValidationError(SchemaError):
    """A field is missing, has the wrong type, or holds a value out of range."""

    def __init__(self, field: str, problem: str, type_name: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.type_name = type_name
        where = f"{type_name}.{field}" if type_name else field
        super().__init__(f"{where}: {problem}")


class ChunkError(SchemaError):
    """A chunk cannot be accepted into, or reassembled from, its stream."""


class DigestMismatchError(ChunkError):
    """The reassembled payload's digest differs from the one the chunks carry."""


class InconsistentChunkError(ChunkError):
    """A chunk's total, sizes or digest disagree with its stream or with itself."""


class UnknownStreamError(ChunkError):
    """A chunk or query names a stream the reassembler does not hold (e.g. expired)."""
