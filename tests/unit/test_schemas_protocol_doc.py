"""docs/protocol.md stays in step with the code."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas import MESSAGE_TYPES, topics
from schemas.codec import (
    _CLASS_BY_SCHEMA_BYTES,
    _fastpath,
    encode,
    encode_reference,
    from_record_batch,
)
from schemas.doc import DOC, render
from tests.unit.test_schemas_codec import samples

pytestmark = pytest.mark.unit


def test_protocol_doc_schema_tables_match_code() -> None:
    text = DOC.read_text()
    assert render(text) == text, "run: python -m schemas.doc"


def test_protocol_doc_mentions_every_field_and_topic() -> None:
    text = DOC.read_text()
    for name, cls in MESSAGE_TYPES.items():
        assert f"### {name}" in text
        for field in cls.ARROW_SCHEMA.names:
            assert f"`{field}`" in text
    for t in (
        topics.KAFKA_ROUND_PLANS,
        topics.KAFKA_CHECKINS,
        topics.KAFKA_PARTIALS,
        topics.KAFKA_MODEL_VERSIONS,
        topics.KAFKA_EVALUATIONS,
        topics.KAFKA_AUDIT,
    ):
        assert t in text


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_fast_writer_output_is_valid_arrow_for_pyarrow(msg: object) -> None:
    reader = pa.ipc.open_stream(encode(msg))
    batch = reader.read_next_batch()
    batch.validate(full=True)
    assert from_record_batch(batch) == msg


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_fast_reader_reads_pyarrow_writer_output(msg: object) -> None:
    data = encode_reference(msg)
    fast = _fastpath.read(data, _CLASS_BY_SCHEMA_BYTES)
    assert fast is not None
    assert fast[0](**fast[1]) == msg
