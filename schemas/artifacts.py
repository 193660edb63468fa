"""Artifact bundle: the ORT training artifacts of one model architecture, as one message.

The coordinator generates the artifacts once per architecture
(training/eval/optimizer models, checkpoint, inference model) and ships them
to devices as one bundle, chunked like any large message. Files are stored
back to back in ``data``; ``names[i]`` has ``sizes[i]`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas import limits as L
from schemas._base import check_types, ids, message, non_empty
from schemas.errors import ValidationError


@message(
    version=2,
    limits={
        "model": L.ID,
        "digest": L.CODE,
        "names": L.Bound(max_items=L.MAX_ARTIFACT_FILES, max_bytes=L.FILE_NAME_BYTES),
        "sizes": L.Bound(max_items=L.MAX_ARTIFACT_FILES),
        "data": L.Bound(max_bytes=L.MAX_ARTIFACT_BYTES),
        "signature": L.SIGNATURE,
    },
)
@dataclass(frozen=True, slots=True)
class ArtifactBundle:
    """Files of one architecture's training artifacts; ``digest`` identifies the set."""

    model: str
    digest: str
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    data: bytes
    signature: bytes = b""  # by the coordinator (flcore.signing); empty: unsigned

    VIEW_FIELDS: ClassVar[frozenset[str]] = frozenset({"data"})

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "model")
        non_empty(self, "digest")
        if len(self.names) != len(self.sizes):
            raise ValidationError(
                "sizes", f"{len(self.sizes)} sizes for {len(self.names)} names", "ArtifactBundle"
            )
        if any(s < 0 for s in self.sizes) or sum(self.sizes) != len(self.data):
            raise ValidationError(
                "data",
                f"{len(self.data)} bytes but sizes add up to {sum(self.sizes)}",
                "ArtifactBundle",
            )
        if len(set(self.names)) != len(self.names) or any(
            not n or "/" in n or n.startswith(".") for n in self.names
        ):
            raise ValidationError("names", "must be unique plain file names", "ArtifactBundle")

    def files(self) -> dict[str, bytes]:
        """The files by name."""
        out: dict[str, bytes] = {}
        offset = 0
        for name, size in zip(self.names, self.sizes, strict=True):
            out[name] = bytes(self.data[offset : offset + size])
            offset += size
        return out

    @classmethod
    def pack(cls, model: str, digest: str, files: dict[str, bytes]) -> ArtifactBundle:
        """Bundle ``files`` (name -> bytes) in name order."""
        names = tuple(sorted(files))
        return cls(
            model,
            digest,
            names,
            tuple(len(files[n]) for n in names),
            b"".join(files[n] for n in names),
        )
