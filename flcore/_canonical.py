"""Unambiguous byte encoding of string/int tuples, shared by tokens and admission hashing."""

from __future__ import annotations

import struct


def encode_fields(*fields: str | int) -> bytes:
    """Encode fields so no two different tuples give the same bytes (length-prefixed)."""
    out = bytearray()
    for field in fields:
        if isinstance(field, bool):
            raise TypeError("booleans are not canonical fields")
        if isinstance(field, int):
            out += b"i" + struct.pack(">q", field)
        else:
            raw = field.encode("utf-8")
            out += b"s" + struct.pack(">I", len(raw)) + raw
    return bytes(out)
