"""Size limits of the contract: declared for every field, refused before being built."""

from __future__ import annotations

import tracemalloc
import typing
from typing import Any

import numpy as np
import pytest

from bench.fuzz_inputs import seeds
from schemas import MESSAGE_TYPES, CheckIn, Chunk, ModelUpdate, Tensors, TensorSpec, codec, limits
from schemas.chunking import Reassembler
from schemas.errors import ValidationError
from schemas.limits import Bound, TensorBound

pytestmark = pytest.mark.unit

BOUNDED = [
    (name, field)
    for name, cls in sorted(MESSAGE_TYPES.items())
    for field, b in cls.LIMITS.items()
    if isinstance(b, Bound) and (b.max_bytes or b.max_items)
]
SMALL = 1000  # a limit larger than this is lowered for the test, to keep messages small


def _valid(name: str) -> Any:
    return codec.decode(seeds(name)[1])


def _oversized(kind: Any, b: Bound) -> Any:
    """A value of ``kind`` one over ``b`` (items first, else bytes)."""
    item = typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else None
    if item is None:
        return "a" * (b.max_bytes + 1) if kind is str else b"a" * (b.max_bytes + 1)
    if b.max_items:
        return (item(1),) * (b.max_items + 1)
    return ("a" * (b.max_bytes + 1),)


def _both_framings(msg: Any) -> list[bytes]:
    """``msg`` as our writer and pyarrow's write it, without the class's checks."""
    ours = b"".join(bytes(memoryview(p).cast("B")) for p in codec.encode_parts(msg))
    theirs = codec._write_stream(codec.to_record_batch(msg)).to_pybytes()
    return [ours, theirs]


def test_every_variable_size_field_declares_a_limit() -> None:
    undeclared = {n: c.UNDECLARED_LIMITS for n, c in MESSAGE_TYPES.items() if c.UNDECLARED_LIMITS}
    assert not undeclared, f"declare limits=... in @message for {undeclared} (schemas/limits.py)"


@pytest.mark.parametrize(("name", "field"), BOUNDED)
def test_decode_over_a_limit_is_a_validation_error_naming_the_field(
    name: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = MESSAGE_TYPES[name]
    b = cls.LIMITS[field]
    if b.max_bytes > SMALL or b.max_items > SMALL:
        b = Bound(min(b.max_bytes, SMALL), min(b.max_items, SMALL))
        monkeypatch.setitem(cls.LIMITS, field, b)
    msg = _valid(name)
    object.__setattr__(msg, field, _oversized(dict(cls.FIELD_KINDS)[field], b))
    for data in _both_framings(msg):
        for decode in (codec.decode, codec.decode_reference):
            with pytest.raises(ValidationError) as e:
                decode(data)
            assert (e.value.field, e.value.type_name) == (field, name)
            assert "at most" in e.value.problem


@pytest.mark.parametrize(
    ("bound", "column"),
    [
        (TensorBound(max_tensors=2), "tensor_names"),
        (TensorBound(name_bytes=4), "tensor_names"),
        (TensorBound(max_rank=2), "tensor_shapes"),
        (TensorBound(max_elements=100), "tensor_data"),
    ],
)
def test_decode_of_tensors_over_a_limit_names_the_column(
    bound: TensorBound, column: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = (TensorSpec("dense/w", (4, 5, 6)), TensorSpec("b", (6,)), TensorSpec("c", ()))
    tensors = Tensors(manifest, np.zeros(127, dtype=np.float32))
    msg = ModelUpdate("m1", 1, 0, "d1", "h1", 10, 0.5, 1.0, b"t", "u1", tensors)
    monkeypatch.setitem(ModelUpdate.LIMITS, "tensors", bound)
    for data in _both_framings(msg):
        for decode in (codec.decode, codec.decode_reference):
            with pytest.raises(ValidationError) as e:
                decode(data)
            assert e.value.field == column


@pytest.mark.parametrize(
    "oversized",
    [{"runtime_version": "x" * 5_000_000}, {"models": tuple(f"m{i}" for i in range(100_000))}],
    ids=["5MB-string", "100k-models"],
)
def test_decode_refuses_an_oversized_checkin_without_building_it(oversized: dict[str, Any]) -> None:
    msg = CheckIn("d1", "h1", ("m1",), "ort-1.19", "sdk-1", True, True, True, 80.0, 512, 1)
    for name, value in oversized.items():
        object.__setattr__(msg, name, value)
    wires = _both_framings(msg)
    del msg, value
    for data in wires:
        tracemalloc.start()
        try:
            with pytest.raises(ValidationError) as e:
                codec.decode(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert e.value.field in oversized
        assert peak < 500_000, f"decoding allocated {peak} bytes of Python objects"


def test_sender_cannot_build_a_message_over_a_limit() -> None:
    models = tuple(f"m{i}" for i in range(limits.MAX_MODELS_PER_CHECKIN + 1))
    with pytest.raises(ValidationError) as e:
        CheckIn("d1", "h1", models, "ort", "sdk", True, True, True, 80.0, 512, 1)
    assert e.value.field == "models"


@pytest.mark.parametrize(
    ("field", "total", "total_bytes", "chunk_size"),
    [
        ("total_bytes", 65, limits.MAX_STREAM_BYTES + 1, limits.MAX_CHUNK_SIZE),
        ("chunk_size", 1, 10, limits.MAX_CHUNK_SIZE + 1),
        ("total", 1_000_000, 1_000_000, 1),  # one flag per chunk would be preallocated
    ],
)
def test_chunk_stream_geometry_over_a_limit_is_refused(
    field: str, total: int, total_bytes: int, chunk_size: int
) -> None:
    with pytest.raises(ValidationError) as e:
        Chunk("s1", "ModelUpdate", 0, total, total_bytes, chunk_size, bytes(16), b"x")
    assert e.value.field == field


def test_reassembler_default_size_limit_is_the_contract() -> None:
    assert Reassembler().max_payload_bytes == limits.MAX_STREAM_BYTES
    assert limits.MAX_STREAM_BYTES > limits.MAX_ARTIFACT_BYTES
    assert limits.MAX_STREAM_BYTES > 4 * limits.MAX_TENSOR_ELEMENTS


def test_fit_text_cuts_details_to_the_contract_on_a_character_boundary() -> None:
    from schemas import AuditEvent
    from schemas.limits import DETAIL_BYTES, fit_text

    long = "é" * DETAIL_BYTES  # two UTF-8 bytes each: twice the limit

    cut = fit_text(long)

    assert len(cut.encode()) <= DETAIL_BYTES and cut == "é" * (DETAIL_BYTES // 2)
    AuditEvent("k", "m", 1, "h0", "d0", "r", cut, 0)  # builds: within the limit
