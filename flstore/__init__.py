"""The model store: versions, weights, lineage and metrics of every model (an adapter).

One port, :class:`flstore.port.ModelStore`, with two implementations that pass
one contract suite (``tests/contracts/store.py``): :class:`FileModelStore` (a
directory per model, what a deployment mounts as a volume) and
:class:`MemoryModelStore` (in process: the demo and tests). Errors:
:mod:`flstore.errors`.
"""

from flstore.errors import StorageFailed, StoreError, VersionExists, VersionNotFound
from flstore.files import FileModelStore
from flstore.memory import MemoryModelStore
from flstore.port import ModelStore, VersionRecord

__all__ = [
    "FileModelStore",
    "MemoryModelStore",
    "ModelStore",
    "StorageFailed",
    "StoreError",
    "VersionExists",
    "VersionNotFound",
    "VersionRecord",
]
