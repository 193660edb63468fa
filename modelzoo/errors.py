"""Exceptions of the model zoo.

Hierarchy::

    ZooError                      base of everything raised on purpose here
    ├── UnknownModelError         no model of that name in the registry (also a KeyError)
    ├── ManifestError             parameters do not match a manifest (also a ValueError)
    └── ArtifactGenerationError   ORT could not build training artifacts from a model
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class of model-zoo errors."""


class UnknownModelError(ZooError, KeyError):
    """The registry has no model of that name."""

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else "unknown model"


class ManifestError(ZooError, ValueError):
    """A parameter vector or dict does not match its manifest (names, shapes, length)."""


class ArtifactGenerationError(ZooError):
    """Training artifacts could not be generated from a model."""
