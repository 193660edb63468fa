"""The training-session pool: reuse, bounds, eviction, and what it must never lend twice."""

from __future__ import annotations

import pytest

from device_sdk.sessions import SessionKey, SessionPool


def _key(digest: str = "v1", optimizer: str | None = "sgd", model: str = "m") -> SessionKey:
    return SessionKey(model, digest, optimizer, 1)


class _Builder:
    def __init__(self) -> None:
        self.made: list[object] = []

    def __call__(self) -> object:
        self.made.append(object())
        return self.made[-1]


def test_pool_lends_the_same_session_for_the_next_run() -> None:
    pool: SessionPool[object] = SessionPool()
    build = _Builder()
    with pool.borrow(_key(), build) as first:
        pass
    with pool.borrow(_key(), build) as second:
        pass
    assert second is first and pool.built == 1 == len(build.made)


def test_pool_never_lends_one_session_to_two_runs_at_once() -> None:
    pool: SessionPool[object] = SessionPool()
    build = _Builder()
    with pool.borrow(_key(), build) as outer, pool.borrow(_key(), build) as inner:
        assert inner is not outer
    assert pool.built == 2 and len(pool) == 1  # one idle per key is kept


def test_pool_drops_a_session_whose_run_raised() -> None:
    pool: SessionPool[object] = SessionPool()
    build = _Builder()
    with pytest.raises(RuntimeError), pool.borrow(_key(), build):
        raise RuntimeError("training step failed")
    with pool.borrow(_key(), build) as again:
        assert again is build.made[1]
    assert pool.built == 2


def test_pool_never_keeps_sessions_of_optimizers_with_state() -> None:
    # AdamW's moments live in ORT's checkpoint state: a reused session would leak them.
    pool: SessionPool[object] = SessionPool()
    build = _Builder()
    for _ in range(2):
        with pool.borrow(_key(optimizer="adamw"), build):
            pass
    assert pool.built == 2 and len(pool) == 0


def test_pool_evicts_older_artifacts_of_a_model_and_stays_bounded() -> None:
    pool: SessionPool[object] = SessionPool(max_idle=3)
    build = _Builder()
    for key in (_key("v1"), _key("v1", optimizer=None), _key("v2")):
        with pool.borrow(key, build):
            pass
    assert len(pool) == 1  # v2 arrived: both v1 sessions went
    for model in ("a", "b", "c", "d"):
        with pool.borrow(_key(model=model), build):
            pass
    assert len(pool) == 3
    with pool.borrow(_key("v2"), build) as got:
        assert got is not build.made[2]  # least recently used: evicted by the cap
