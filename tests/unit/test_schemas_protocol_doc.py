"""docs/protocol.md stays in step with the code."""

from __future__ import annotations

import pytest

from schemas import MESSAGE_TYPES, topics
from schemas.doc import DOC, render

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
        topics.KAFKA_PARTIALS_PREFIX,
        topics.KAFKA_MODEL_VERSIONS,
        topics.KAFKA_EVALUATIONS,
        topics.KAFKA_AUDIT,
    ):
        assert t in text
