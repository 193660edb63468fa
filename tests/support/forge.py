"""Messages past their constructor's checks, as a hostile client would put them on the wire."""

from __future__ import annotations

from typing import Any

from schemas.codec import encode_reference


def forged(msg: Any, **fields: Any) -> bytes:
    """``msg`` with ``fields`` set past its checks (limits, ids), encoded by plain pyarrow."""
    for name, value in fields.items():
        object.__setattr__(msg, name, value)
    return encode_reference(msg)
