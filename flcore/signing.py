"""Signatures of control messages: the coordinator signs, devices verify (Ed25519).

A signed message (``RoundPlan``, ``ModelVersion``, ``ArtifactBundle``) carries
``signature`` as its last field: an 8-byte key id (the first 8 bytes of the
SHA-256 of the raw public key, so keys can be rotated later) followed by the
64-byte Ed25519 signature of :func:`digest`.

The digest is SHA-256 over a canonical encoding of the message *values*, not of
its Arrow bytes (the fast path and pyarrow may lay out the same message
differently): a domain tag, the type name and schema version, then every field
but ``signature`` in declaration order, each as its length-prefixed name and a
type-tagged, length-prefixed value. The walk is generic over the dataclass
fields, so a field added to a message later is signed without edits here.

Verification never raises on hostile input: :meth:`TrustedKeys.verify` returns
None (genuine) or the reason it is not (``unsigned``, ``unknown_key``,
``bad_signature``). Key generation takes its seed as an argument (the shell
draws it), so the core holds no randomness.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final, Literal

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flcore.errors import InvalidParameter
from schemas.tensors import Tensors

SIGNATURE_FIELD: Final = "signature"
KEY_ID_BYTES: Final = 8
ED25519_BYTES: Final = 64
SIGNATURE_BYTES: Final = KEY_ID_BYTES + ED25519_BYTES
DOMAIN: Final = b"nightshift-fl/control-signature/v1\x00"

Reason = Literal["unsigned", "unknown_key", "bad_signature"]
UNSIGNED: Final[Reason] = "unsigned"
UNKNOWN_KEY: Final[Reason] = "unknown_key"
BAD_SIGNATURE: Final[Reason] = "bad_signature"

_LEN = struct.Struct(">Q")


def key_id(public: Ed25519PublicKey) -> bytes:
    """The 8-byte id of a public key: the start of the SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_BYTES]


def _put(h: Any, tag: bytes, data: bytes | memoryview) -> None:
    h.update(tag)
    h.update(_LEN.pack(len(data) if isinstance(data, bytes) else data.nbytes))
    h.update(data)


def _value(h: Any, value: Any) -> None:
    """Feed one value, tagged by its type, so that no two different values collide."""
    if isinstance(value, bool):
        _put(h, b"b", b"\x01" if value else b"\x00")
    elif isinstance(value, int):
        _put(h, b"i", value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True))
    elif isinstance(value, float):
        _put(h, b"f", struct.pack(">d", value))
    elif isinstance(value, str):
        _put(h, b"s", value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes | bytearray):
        _put(h, b"y", bytes(value))
    elif isinstance(value, memoryview):
        _put(h, b"y", value.cast("B"))
    elif isinstance(value, tuple):
        h.update(b"t" + _LEN.pack(len(value)))
        for item in value:
            _value(h, item)
    elif isinstance(value, Tensors):
        h.update(b"T" + _LEN.pack(len(value.manifest)))
        for spec in value.manifest:
            _value(h, spec.name)
            _value(h, tuple(spec.shape))
        flat = np.ascontiguousarray(value.flat, dtype="<f4")
        _put(h, b"y", flat.data.cast("B"))
    else:
        raise InvalidParameter(f"cannot sign a field of type {type(value).__name__}")


def digest(msg: Any) -> bytes:
    """SHA-256 of the canonical encoding of every field of ``msg`` but ``signature``."""
    h = hashlib.sha256(DOMAIN)
    _value(h, type(msg).__name__)
    _value(h, int(getattr(msg, "SCHEMA_VERSION", 0)))
    for f in dataclasses.fields(msg):
        if f.name == SIGNATURE_FIELD:
            continue
        _value(h, f.name)
        _value(h, getattr(msg, f.name))
    return h.digest()


class Signer:
    """The coordinator's private key: signs control messages."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        """The key pair of a 32-byte seed (draw it with ``secrets.token_bytes(32)``)."""
        if len(seed) != 32:
            raise InvalidParameter(f"an Ed25519 seed has 32 bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, data: bytes) -> Signer:
        """The key of a PKCS8 PEM (unencrypted); InvalidParameter if it is no Ed25519 key."""
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidParameter(f"not an unencrypted PKCS8 PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidParameter(f"not an Ed25519 key but {type(key).__name__}")
        return cls(key)

    def private_pem(self) -> bytes:
        """The private key as PKCS8 PEM (unencrypted: protect the file, mode 0600)."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM, what devices pin."""
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def trusted(self) -> TrustedKeys:
        """The verifier that pins this key."""
        return TrustedKeys([self.public])

    def signature(self, msg: Any) -> bytes:
        """The signature field of ``msg``: key id, then the Ed25519 signature of its digest."""
        return self.key_id + self._private.sign(digest(msg))

    def sign(self, msg: Any) -> Any:
        """``msg`` with its ``signature`` field set (a new message; ``msg`` is frozen)."""
        return dataclasses.replace(msg, **{SIGNATURE_FIELD: self.signature(msg)})

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id.hex()})"


def public_key_from_pem(data: bytes) -> Ed25519PublicKey:
    """The Ed25519 public key of a PEM; InvalidParameter if it is not one."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InvalidParameter(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidParameter(f"not an Ed25519 key but {type(key).__name__}")
    return key


class TrustedKeys:
    """The coordinator public keys a device pins, by key id.

    It remembers the last ``remember`` (signature, digest) pairs that verified:
    devices of one simulator share one TrustedKeys, and each of them checks the
    same plan; a hit still recomputes the digest, so it only skips the Ed25519
    check of bytes already verified. It also remembers the last ``remember``
    message *objects* that verified (held, so their ids stay theirs): a
    simulator decodes a broadcast once for all its devices, and the digest of a
    model version (every weight) is then computed once, not once per device.
    Messages are frozen; one mutated after it verified is not re-checked.
    """

    def __init__(self, keys: Iterable[Ed25519PublicKey], remember: int = 64) -> None:
        self._keys = {key_id(k): k for k in keys}
        if not self._keys:
            raise InvalidParameter("pin at least one coordinator public key")
        self._remember = remember
        self._verified: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
        self._objects: OrderedDict[int, Any] = OrderedDict()  # id -> the message itself

    @classmethod
    def from_pem(cls, data: bytes) -> TrustedKeys:
        """Pin the one public key of a PEM."""
        return cls([public_key_from_pem(data)])

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the raw public keys: a simulator hands the pin to its worker processes."""
        raw = tuple(
            k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            for k in self._keys.values()
        )
        return (_trusted_from_raw, (raw, self._remember))

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        """Ids of the pinned keys."""
        return tuple(self._keys)

    def verify(self, msg: Any) -> Reason | None:
        """None if ``msg`` is signed by a pinned key, else why not (never raises)."""
        sig = getattr(msg, SIGNATURE_FIELD, b"")
        if not sig:
            return UNSIGNED
        sig = bytes(sig)
        if len(sig) != SIGNATURE_BYTES:
            return BAD_SIGNATURE
        key = self._keys.get(sig[:KEY_ID_BYTES])
        if key is None:
            return UNKNOWN_KEY
        if self._objects.get(id(msg)) is msg:
            self._objects.move_to_end(id(msg))
            return None
        seen = (sig, digest(msg))
        if seen in self._verified:
            self._verified.move_to_end(seen)
        else:
            try:
                key.verify(sig[KEY_ID_BYTES:], seen[1])
            except InvalidSignature:
                return BAD_SIGNATURE
            self._verified[seen] = None
            if len(self._verified) > self._remember:
                self._verified.popitem(last=False)
        self._objects[id(msg)] = msg
        if len(self._objects) > self._remember:
            self._objects.popitem(last=False)
        return None

    def __repr__(self) -> str:
        return f"TrustedKeys({[k.hex() for k in self._keys]})"


def _trusted_from_raw(raw: tuple[bytes, ...], remember: int) -> TrustedKeys:
    """Rebuild a pickled TrustedKeys (see ``TrustedKeys.__reduce__``)."""
    return TrustedKeys([Ed25519PublicKey.from_public_bytes(r) for r in raw], remember)
