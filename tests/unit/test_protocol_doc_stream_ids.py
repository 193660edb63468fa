"""docs/protocol.md names the chunk stream ids the services put on the wire."""

from __future__ import annotations

import re

import numpy as np
import pytest

from flbus.memory import MemoryLog
from schemas import Chunk, ModelVersion, Tensors, TensorSpec, decode, topics
from schemas.doc import DOC
from services.coordinator.coordinator import KafkaOutbox
from tests.support.signing import SIGNER

pytestmark = pytest.mark.unit


async def test_protocol_doc_gives_the_model_version_stream_id_the_coordinator_sends() -> None:
    # Prepare: the coordinator's outbox on an in-memory log
    bus = MemoryLog()
    await bus.start()
    tensors = Tensors((TensorSpec("w", (4,)),), np.ones(4, np.float32))
    version = ModelVersion("digits_mlp", 7, 6, 7, 1_000, ("accuracy",), (0.9,), "abc", tensors)

    # Execute: publish a version, read the stream id off the wire, and the doc's templates
    await KafkaOutbox(bus, clock=lambda: 1_000, signer=SIGNER).version(version)
    sub = await bus.subscribe([topics.KAFKA_MODEL_VERSIONS], start="earliest")
    record = await sub.get(1.0)
    await bus.stop()
    assert record is not None
    on_wire = decode(record.value, Chunk).stream_id
    templates = re.findall(r"\{model\}[^`\"\s]*v\{version\}", DOC.read_text())

    # Assert: every place the doc gives it (the chunking rules and the topic table) agrees
    assert len(templates) >= 2, templates
    assert {t.format(model="digits_mlp", version=7) for t in templates} == {on_wire}
