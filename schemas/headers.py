"""Headers of upload chunks: the claims a device attaches to every chunk it uploads.

MQTT v5 user properties (and Kafka record headers, where the selector copies
them unchanged) carry, on every ``Chunk`` of a ``ModelUpdate`` and on a
``TrainingFailure``:

=================  ==============================================
``token``          the task's admission token, lowercase hex
``model``          the model name
``round``          the round id, decimal
``base_version``   the base model version, decimal
=================  ==============================================

All four are ASCII because MQTT user properties are UTF-8 strings. They let a
selector check the token on every chunk without reassembling the update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.errors import ValidationError

TOKEN, MODEL, ROUND, BASE_VERSION = "token", "model", "round", "base_version"
UPLOAD_HEADERS = (TOKEN, MODEL, ROUND, BASE_VERSION)


@dataclass(frozen=True, slots=True)
class UploadClaims:
    """What an upload's headers claim; the token says whether the claims hold."""

    token: bytes
    model: str
    round_id: int
    base_version: int


def upload_headers(
    token: bytes, model: str, round_id: int, base_version: int
) -> tuple[tuple[str, bytes], ...]:
    """The headers a device puts on every chunk of an upload."""
    return (
        (TOKEN, token.hex().encode()),
        (MODEL, model.encode()),
        (ROUND, str(round_id).encode()),
        (BASE_VERSION, str(base_version).encode()),
    )


def parse_upload_headers(headers: Sequence[tuple[str, bytes]]) -> UploadClaims:
    """The claims in ``headers`` (last value wins); ValidationError names a bad header."""
    values = dict(headers)
    missing = [name for name in UPLOAD_HEADERS if name not in values]
    if missing:
        raise ValidationError(missing[0], "missing upload header", "UploadHeaders")
    text: dict[str, str] = {}
    for name in UPLOAD_HEADERS:
        try:
            text[name] = values[name].decode("ascii")
        except UnicodeDecodeError:
            raise ValidationError(name, "not ASCII", "UploadHeaders") from None
    try:
        token = bytes.fromhex(text[TOKEN])
    except ValueError:
        raise ValidationError(TOKEN, "not hex", "UploadHeaders") from None
    numbers: dict[str, int] = {}
    for name in (ROUND, BASE_VERSION):
        try:
            numbers[name] = int(text[name])
        except ValueError:
            raise ValidationError(
                name, f"not a decimal integer: {text[name]!r}", "UploadHeaders"
            ) from None
    return UploadClaims(token, text[MODEL], numbers[ROUND], numbers[BASE_VERSION])
