"""flcore.signing and flcore.control: what a signature covers and what a device adopts."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

from flcore.control import STALE_VERSION, judge, position
from flcore.errors import InvalidParameter
from flcore.signing import Signer, TrustedKeys, digest
from schemas import ModelVersion, RoundPlan, Tensors, decode, encode
from schemas.artifacts import ArtifactBundle
from schemas.tensors import TensorSpec

pytestmark = pytest.mark.unit

KEY = Signer.from_seed(bytes(range(32)))
OTHER = Signer.from_seed(bytes(range(1, 33)))
TRUST = KEY.trusted()


def _plan(**over: Any) -> RoundPlan:
    fields: dict[str, Any] = dict(
        model="m1", round_id=3, base_version=2, state="selecting", local_epochs=1, max_steps=0,
        batch_size=16, learning_rate=0.1, clip_norm=1.0, noise_multiplier=0.0,
        hospitals=("h0", "h1"), targets=(2, 3), admission_probability=1.0, over_selection=1.3,
        min_fraction=0.5, opened_at_ms=10, deadline_ms=20, reason="",
    )  # fmt: skip
    return RoundPlan(**{**fields, **over})


def _version(version: int = 4) -> ModelVersion:
    tensors = Tensors((TensorSpec("w", (2, 2)),), np.arange(4, dtype=np.float32))
    return ModelVersion("m1", version, version - 1, version, 7, ("acc",), (0.5,), "abc", tensors)


def _bundle() -> ArtifactBundle:
    return ArtifactBundle.pack("m1", "abc", {"a.onnx": b"x" * 100, "b.ckpt": b"y" * 10})


# A changed value of each field (same type, still valid), for the tamper test.
TAMPERED: dict[str, Any] = {
    "model": "m2", "round_id": 4, "base_version": 3, "state": "training", "local_epochs": 2,
    "max_steps": 1, "batch_size": 8, "learning_rate": 0.2, "clip_norm": 2.0,
    "noise_multiplier": 0.5, "hospitals": ("h0", "h2"), "targets": (2, 4),
    "admission_probability": 0.5, "over_selection": 1.4, "min_fraction": 0.6,
    "opened_at_ms": 11, "deadline_ms": 21, "reason": "x", "aggregation": "median",
    "trim_fraction": 0.2,
}  # fmt: skip


def test_signing_a_plan_survives_the_wire_and_verifies() -> None:
    signed = KEY.sign(_plan())

    got = decode(encode(signed), RoundPlan)

    assert len(got.signature) == 72 and TRUST.verify(got) is None


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(RoundPlan)][:-1])
def test_signing_any_tampered_plan_field_fails(field: str) -> None:
    signed = KEY.sign(_plan())
    # Every field but the signature has a tampered value (a field added later must get one).
    assert field in TAMPERED, f"add a tampered value for new field {field!r}"

    forged = dataclasses.replace(signed, **{field: TAMPERED[field]})

    assert TRUST.verify(forged) == "bad_signature"


def test_signing_tampered_weights_or_artifact_bytes_fail() -> None:
    version, bundle = KEY.sign(_version()), KEY.sign(_bundle())
    flat = version.tensors.flat.copy()
    flat[3] += 1e-6
    bad_version = dataclasses.replace(version, tensors=Tensors(version.tensors.manifest, flat))
    bad_bundle = dataclasses.replace(bundle, data=b"y" + bytes(bundle.data)[1:])

    assert TRUST.verify(version) is None and TRUST.verify(bundle) is None
    assert TRUST.verify(bad_version) == "bad_signature"
    assert TRUST.verify(bad_bundle) == "bad_signature"


def test_signing_covers_a_field_added_later() -> None:
    # A message type like a plan that grew a field: the generic walk signs it unchanged.
    # (Not registered with @message: the protocol doc and the fuzzer walk the registry.)
    @dataclasses.dataclass(frozen=True, slots=True)
    class GrownForSigningTest:
        model: str
        rule: str
        signature: bytes = b""

    signed = KEY.sign(GrownForSigningTest("m1", "fedavg"))

    assert TRUST.verify(signed) is None
    assert TRUST.verify(dataclasses.replace(signed, rule="median")) == "bad_signature"


def test_signing_digest_tells_apart_fields_that_concatenate_alike() -> None:
    a = _plan(hospitals=("h0h", "1"), targets=(2, 3))
    b = _plan(hospitals=("h0", "h1"), targets=(2, 3))

    assert digest(a) != digest(b)
    assert digest(_plan(reason="")) != digest(_plan(reason="\x00"))


def test_signing_rejects_unsigned_unknown_key_and_garbage() -> None:
    plan = _plan()

    assert TRUST.verify(plan) == "unsigned"
    assert TRUST.verify(OTHER.sign(plan)) == "unknown_key"
    assert TRUST.verify(dataclasses.replace(plan, signature=KEY.key_id + b"\x00" * 64)) == (
        "bad_signature"
    )
    assert TRUST.verify(dataclasses.replace(plan, signature=b"\x01" * 5)) == "bad_signature"


def test_signing_keys_round_trip_through_pem() -> None:
    again = Signer.from_pem(KEY.private_pem())
    pinned = TrustedKeys.from_pem(KEY.public_pem())

    assert pinned.verify(again.sign(_plan())) is None
    with pytest.raises(InvalidParameter):
        Signer.from_pem(KEY.public_pem())
    with pytest.raises(InvalidParameter):
        TrustedKeys.from_pem(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


def test_control_forged_huge_version_changes_nothing_but_signed_newer_does() -> None:
    highest = position(KEY.sign(_version(4)))
    forged = dataclasses.replace(_version(10**9), signature=OTHER.signature(_version(10**9)))

    assert judge(_version(10**9), TRUST, highest) == "unsigned"
    assert judge(forged, TRUST, highest) == "unknown_key"
    assert judge(KEY.sign(_version(3)), TRUST, highest) == STALE_VERSION
    assert judge(KEY.sign(_version(4)), TRUST, highest) is None  # the same one, after a restart
    assert judge(KEY.sign(_version(5)), TRUST, highest) is None


def test_control_plans_move_forward_by_round_then_progress() -> None:
    closed = position(_plan(round_id=3, state="done"))

    assert judge(KEY.sign(_plan(round_id=3, state="selecting")), TRUST, closed) == STALE_VERSION
    assert judge(KEY.sign(_plan(round_id=2, state="done")), TRUST, closed) == STALE_VERSION
    assert judge(KEY.sign(_plan(round_id=3, state="abandoned")), TRUST, closed) is None
    assert judge(KEY.sign(_plan(round_id=4, state="selecting")), TRUST, closed) is None


def test_a_pickled_pin_still_verifies_and_still_refuses_a_forger() -> None:
    # A simulator hands the pin to its device worker processes pickled.
    other = Signer.from_seed(bytes(range(1, 33)))
    copy = pickle.loads(pickle.dumps(TRUST))

    assert copy.key_ids == TRUST.key_ids
    assert copy.verify(KEY.sign(_plan())) is None
    assert copy.verify(other.sign(_plan())) == "unknown_key"


def test_verifying_the_same_message_object_again_skips_its_digest(monkeypatch: Any) -> None:
    # Prepare: a fresh pin, a signed version (its digest walks every weight), a digest counter.
    import flcore.signing as signing

    pinned, version = KEY.trusted(), KEY.sign(_version())
    calls: list[int] = []

    def counted(msg: Any) -> bytes:
        calls.append(1)
        return digest(msg)

    monkeypatch.setattr(signing, "digest", counted)
    # Execute: a simulator's devices check the one decoded object, then a tampered copy.
    verdicts = [pinned.verify(version) for _ in range(5)]
    forged = dataclasses.replace(version, version=99)
    # Assert: one digest for the five checks; the copy is still digested and refused.
    assert verdicts == [None] * 5 and len(calls) == 1
    assert pinned.verify(forged) == "bad_signature" and len(calls) == 2
