"""Whether a device adopts a control message: signed by a pinned key, and not older.

A version number only moves forward through a signed message: :func:`judge`
checks the signature first, so an unsigned or forged message never gets as far
as comparing versions (a forged ``version=10**9`` changes nothing), then
compares the message's :func:`position` with the highest one the device adopted
(a replayed, genuinely signed but older plan or version is ``stale_version``).

Positions: a model version is ordered by its number; a round plan by its round,
then by how far the round went (selecting < training < done/abandoned), so the
plans of one round still arrive in order while a replayed "selecting" of a
closed round does not reopen it. Artifact bundles carry no number: they are
named by their digest, and a model version says which one it needs.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from flcore.signing import Reason, TrustedKeys
from schemas import ModelVersion, RoundPlan

Position = tuple[int, int]
STALE_VERSION: Final = "stale_version"
Refusal = Reason | Literal["stale_version"]
REFUSALS: Final[tuple[str, ...]] = ("unsigned", "unknown_key", "bad_signature", STALE_VERSION)

PLAN_PROGRESS: Final[dict[str, int]] = {
    "selecting": 0,
    "training": 1,
    "done": 2,
    "abandoned": 2,
}
"""How far a round went, by plan state (an unknown state counts as 0)."""


def position(msg: Any) -> Position | None:
    """Where ``msg`` stands in its model's history, or None if it has no number."""
    if isinstance(msg, RoundPlan):
        return msg.round_id, PLAN_PROGRESS.get(msg.state, 0)
    if isinstance(msg, ModelVersion):
        return msg.version, 0
    return None


def judge(msg: Any, keys: TrustedKeys, highest: Position | None) -> Refusal | None:
    """None if the device may adopt ``msg``, else why not.

    ``highest`` is the position of the newest message of this kind the device
    adopted for the model (None: none yet). The same position is adopted again
    (a retained message read after a restart).
    """
    reason = keys.verify(msg)
    if reason is not None:
        return reason
    where = position(msg)
    if where is not None and highest is not None and where < highest:
        return STALE_VERSION
    return None
