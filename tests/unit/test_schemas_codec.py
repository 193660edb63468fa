"""Round trips and bad input for the schema codec."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import schemas
from schemas import (
    MESSAGE_TYPES,
    ArtifactBundle,
    AuditEvent,
    CheckIn,
    Chunk,
    DeadLetter,
    EvaluationReport,
    ModelUpdate,
    ModelVersion,
    PartialAggregate,
    RetryAfter,
    RoundPlan,
    Task,
    Tensors,
    TrainingFailure,
    decode,
    encode,
)
from schemas.codec import to_record_batch
from schemas.errors import (
    DecodeError,
    SchemaError,
    SchemaVersionError,
    UnknownMessageError,
    ValidationError,
)

pytestmark = pytest.mark.unit


def _tensors() -> Tensors:
    rng = np.random.default_rng(0)
    return Tensors.from_dict({"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "s": 1.5})


def samples() -> list[Any]:
    """One valid instance of every message type."""
    t = _tensors()
    return [
        CheckIn(
            "dev-1",
            "hosp_a",
            ("m1", "m2"),
            "ort-1.19.2",
            "0.1.0",
            True,
            True,
            False,
            87.5,
            2048,
            1_700_000_000_000,
        ),
        Task(
            "dev-1",
            "hosp_a",
            "m1",
            3,
            2,
            1,
            0,
            32,
            0.01,
            1.0,
            0.0,
            1_700_000_600_000,
            b"\x00tok",
            1_700_000_000_000,
        ),
        RetryAfter("dev-1", "hosp_a", "m1", 1_700_000_900_000, "no_open_round"),
        RoundPlan(
            "m1",
            3,
            2,
            "open",
            1,
            0,
            32,
            0.01,
            1.0,
            0.0,
            ("hosp_a", "hosp_b"),
            (10, 5),
            0.25,
            1.3,
            0.8,
            1_700_000_000_000,
            1_700_003_600_000,
            "",
            "trimmed_mean",
            0.2,
        ),
        ModelUpdate("m1", 3, 2, "dev-1", "hosp_a", 120, 0.42, 33.0, b"tok", "upd-1", t),
        TrainingFailure("m1", 3, "dev-1", "hosp_a", "out_of_memory", "OOM at step 4", 5),
        PartialAggregate("m1", 3, 2, "hosp_a", 4, 480, 1.7, 130.0, 1, t),
        ModelVersion("m1", 3, 2, 3, 1_700_004_000_000, ("loss", "acc"), (0.3, 0.91), "ab12", t),
        EvaluationReport("m1", 3, "dev-1", "hosp_a", 50, 0.35, 0.9, 7),
        AuditEvent("update.rejected", "m1", 3, "hosp_a", "dev-1", "norm_bound", "norm 12.0", 9),
        Chunk("s-1", "ModelUpdate", 0, 1, 3, 512 * 1024, b"\x01" * 16, b"abc"),
        ArtifactBundle.pack("m1", "sha-1", {"training_model.onnx": b"\x08\x07", "checkpoint": b""}),
        DeadLetter(
            "fl.v1.updates.hosp_a",
            0,
            41,
            b"dev-1",
            1_700_000_000_000,
            "aggregator",
            "hosp_a",
            "undecodable",
            "DecodeError: not Arrow",
            9,
            b"\x00garbage",
            1_700_000_000_001,
        ),
    ]


def test_samples_cover_every_registered_type() -> None:
    assert {type(m).__name__ for m in samples()} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_codec_round_trip_preserves_every_field(msg: Any) -> None:
    out = decode(encode(msg))
    assert type(out) is type(msg)
    assert out == msg


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_codec_schema_metadata_carries_type_and_version(msg: Any) -> None:
    schema = pa.ipc.open_stream(encode(msg)).schema
    assert schema.metadata[b"fl.type"] == type(msg).__name__.encode()
    assert schema.metadata[b"fl.schema_version"] == str(type(msg).SCHEMA_VERSION).encode()
    # Version 2 added the coordinator's signature to the control messages.
    signed = type(msg).__name__ in ("RoundPlan", "ModelVersion", "ArtifactBundle")
    version: int = type(msg).SCHEMA_VERSION
    assert version == (2 if signed else 1)


def test_decode_tensors_are_views_into_the_input_bytes() -> None:
    msg = samples()[4]
    data = encode(msg)
    out = decode(data, ModelUpdate)
    assert np.shares_memory(out.tensors.flat, np.frombuffer(data, np.uint8))
    np.testing.assert_array_equal(out.tensors.to_dict()["w"], msg.tensors.to_dict()["w"])


def test_decode_expect_wrong_type_raises() -> None:
    with pytest.raises(UnknownMessageError, match="expected Task, got CheckIn"):
        decode(encode(samples()[0]), Task)


@pytest.mark.parametrize("data", [b"", b"garbage bytes", bytes(range(256)) * 4])
def test_decode_garbage_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_truncated_stream_raises_decode_error() -> None:
    data = encode(samples()[4])
    for cut in (8, len(data) // 2, len(data) - 100):
        with pytest.raises(DecodeError):
            decode(data[:cut])


def _reencode(batch: pa.RecordBatch, schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as w:
        w.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
    return sink.getvalue().to_pybytes()


def _with_meta(msg: Any, **meta: str) -> bytes:
    batch = to_record_batch(msg)
    new = dict(batch.schema.metadata)
    new.update({k.replace("_", ".", 1).encode(): v.encode() for k, v in meta.items()})
    return _reencode(batch, batch.schema.with_metadata(new))


@pytest.mark.parametrize("version", ["2", "0", "x", ""])
def test_decode_future_or_bad_version_names_versions(version: str) -> None:
    data = _with_meta(samples()[0], fl_schema_version=version)
    with pytest.raises(SchemaVersionError, match=r"CheckIn: schema version .* \(supported: 1\)"):
        decode(data)


def test_decode_unknown_type_raises() -> None:
    with pytest.raises(UnknownMessageError, match="Nope"):
        decode(_with_meta(samples()[0], fl_type="Nope"))


def test_decode_plain_arrow_without_metadata_raises_unknown_message() -> None:
    table_batch = pa.record_batch({"a": [1]})
    with pytest.raises(UnknownMessageError, match=r"fl\.type"):
        decode(_reencode(table_batch, table_batch.schema))


def test_decode_missing_field_names_it() -> None:
    batch = to_record_batch(samples()[0])
    idx = batch.schema.get_field_index("battery_pct")
    batch = batch.drop_columns(["battery_pct"])
    schema = batch.schema.with_metadata(to_record_batch(samples()[0]).schema.metadata)
    assert idx >= 0
    with pytest.raises(ValidationError, match="battery_pct: missing") as info:
        decode(_reencode(batch, schema))
    assert info.value.field == "battery_pct"


def test_decode_wrong_type_names_field() -> None:
    batch = to_record_batch(samples()[0])
    i = batch.schema.get_field_index("free_memory_mb")
    cols = list(batch.columns)
    cols[i] = pa.array(["lots"])
    schema = batch.schema.set(i, pa.field("free_memory_mb", pa.string()))
    with pytest.raises(ValidationError, match="free_memory_mb: expected int64, got string"):
        decode(_reencode(pa.RecordBatch.from_arrays(cols, schema=schema), schema))


def test_decode_null_value_names_field() -> None:
    batch = to_record_batch(samples()[0])
    i = batch.schema.get_field_index("sdk_version")
    cols = list(batch.columns)
    cols[i] = pa.array([None], pa.string())
    schema = batch.schema.set(i, pa.field("sdk_version", pa.string(), nullable=True))
    with pytest.raises(ValidationError, match="sdk_version: must not be null"):
        decode(_reencode(pa.RecordBatch.from_arrays(cols, schema=schema), schema))


def test_decode_out_of_range_value_names_field() -> None:
    msg = samples()[8]
    batch = to_record_batch(msg)
    i = batch.schema.get_field_index("accuracy")
    cols = list(batch.columns)
    cols[i] = pa.array([1.5])
    with pytest.raises(ValidationError, match=r"EvaluationReport\.accuracy"):
        decode(_reencode(pa.RecordBatch.from_arrays(cols, schema=batch.schema), batch.schema))


def test_decode_accepts_nullable_fields_from_other_writers() -> None:
    msg = samples()[4]
    batch = to_record_batch(msg)
    loose = pa.schema([f.with_nullable(True) for f in batch.schema], metadata=batch.schema.metadata)
    assert decode(_reencode(batch, loose)) == msg


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"device_id": ""}, "device_id"),
        ({"device_id": "a/b"}, "device_id"),
        ({"hospital_id": "h+"}, "hospital_id"),
        ({"models": ("m#",)}, "models"),
        ({"battery_pct": float("nan")}, "battery_pct"),
        ({"battery_pct": 101.0}, "battery_pct"),
        ({"free_memory_mb": -1}, "free_memory_mb"),
        ({"free_memory_mb": "1"}, "free_memory_mb"),
        ({"charging": 1}, "charging"),
    ],
)
def test_checkin_invalid_field_is_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        dataclasses.replace(samples()[0], **change)
    assert info.value.field == field
    assert f"CheckIn.{field}" in str(info.value)


@pytest.mark.parametrize(
    ("index", "change", "field"),
    [
        (1, {"token": b""}, "token"),
        (1, {"batch_size": 0}, "batch_size"),
        (1, {"learning_rate": float("inf")}, "learning_rate"),
        (3, {"targets": (1,)}, "targets"),
        (3, {"admission_probability": 1.5}, "admission_probability"),
        (3, {"hospitals": ("h", "h"), "targets": (1, 1)}, "hospitals"),
        (4, {"num_examples": -1}, "num_examples"),
        (4, {"train_loss": float("nan")}, "train_loss"),
        (4, {"update_id": ""}, "update_id"),
        (6, {"rejected": -2}, "rejected"),
        (7, {"metric_values": (1.0,)}, "metric_values"),
        (7, {"parent_version": -2}, "parent_version"),
        (9, {"kind": ""}, "kind"),
    ],
)
def test_message_invalid_field_is_named(index: int, change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        dataclasses.replace(samples()[index], **change)
    assert info.value.field == field


def test_lists_and_numpy_scalars_are_normalised() -> None:
    msg = dataclasses.replace(samples()[0], models=["m1"], free_memory_mb=np.int64(5))
    assert msg.models == ("m1",)
    assert type(msg.free_memory_mb) is int


def test_tensors_reject_wrong_length_and_dtype() -> None:
    t = _tensors()
    with pytest.raises(ValidationError, match="manifest describes"):
        Tensors(t.manifest, t.flat[:-1])
    with pytest.raises(ValidationError, match="float32"):
        Tensors(t.manifest, t.flat.astype(np.float64))


def test_tensors_to_dict_returns_views() -> None:
    t = _tensors()
    views = t.to_dict()
    assert all(np.shares_memory(v, t.flat) for v in views.values())
    assert views["w"].shape == (3, 4)
    assert views["s"].shape == ()
    assert t.nbytes == 4 * (12 + 4 + 1)


def test_encode_unregistered_type_raises() -> None:
    with pytest.raises(SchemaError):
        encode(object())


def test_schemas_modules_import_no_c_api_and_no_process_plumbing() -> None:
    # Contracts carry no speed tricks: no ctypes, no process tuning (flproc does that).
    package = Path(schemas.__file__).parent
    imported: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.setdefault(path.name, set()).update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.setdefault(path.name, set()).add(node.module)
    assert "codec.py" in imported  # the walk saw the package
    bad = {
        (name, module)
        for name, modules in imported.items()
        for module in modules
        if module.split(".")[0] in {"ctypes", "cffi", "flproc"}
    }
    assert bad == set()
