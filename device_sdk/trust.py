"""The device's gate on control messages: adopt only what the pinned coordinator key signed.

Plans, model versions and artifact bundles all pass :meth:`ControlGate.admit`
before the device uses them (``client`` for plans, ``downloads`` for versions
and bundles, before a bundle touches the disk). A refusal is counted in
``DeviceStats.control_refused`` by reason (unsigned, unknown_key,
bad_signature, stale_version) and logged as ``control.refused``; the message is
dropped and nothing the device holds changes. The newest adopted plan and
version of each model are kept in the round ledger, so a replayed older one
stays refused after a restart. The rule itself is ``flcore.control.judge``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from device_sdk.ledger import RoundLedger
from flcore.control import judge, position
from flcore.signing import TrustedKeys


class ControlGate:
    """Verifies control messages against the pinned keys and the newest ones adopted."""

    def __init__(
        self, keys: TrustedKeys, ledger: RoundLedger, refused: Counter[str], log: Any
    ) -> None:
        self._keys = keys
        self._ledger = ledger
        self._refused = refused
        self._log = log

    def admit(self, msg: Any, what: str, model: str) -> bool:
        """Whether the device may adopt ``msg`` (a ``what`` of ``model``); records it if so."""
        highest = self._ledger.highest(model, what)
        reason = judge(msg, self._keys, highest)
        if reason is not None:
            self._refused[reason] += 1
            self._log.warning(
                "control.refused",
                what=what,
                model=model,
                reason=reason,
                position=position(msg),
                newest_adopted=highest,
            )
            return False
        where = position(msg)
        if where is not None:
            self._ledger.adopted(model, what, where)
        return True
