"""When a device may check in for a model's selecting plan, and the check-in it sends.

A device checks in at most once per round and only while nothing blocks it:
the plan is selecting, not expired and names its hospital; no round is in
flight; the selector's "come back at" time has passed; no check-in for this
round awaits its answer; it has not taken part in the round; it holds
labelled examples; and its conditions pass the eligibility policy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from device_sdk.context import DeviceContext
from device_sdk.eligibility import ConditionsProvider, EligibilityPolicy
from device_sdk.errors import SdkError
from device_sdk.state import ModelState
from flbus.errors import BusError
from schemas import CheckIn, encode
from schemas.topics import checkin_topic

SDK_VERSION = "0.1.0"
SELECTING = "selecting"


class CheckIns:
    """Decides and sends a device's check-ins (one per model and round)."""

    def __init__(
        self,
        ctx: DeviceContext,
        conditions: ConditionsProvider,
        policy: EligibilityPolicy,
        conditions_clock: Callable[[], datetime],
    ) -> None:
        self._ctx = ctx
        self._conditions = conditions
        self._policy = policy
        self._conditions_clock = conditions_clock

    def blocker(self, state: ModelState) -> str | None:
        """Why the device must not check in for ``state``'s plan now, or None if it may."""
        ctx = self._ctx
        plan, now = state.plan, ctx.clock()
        if plan is None or plan.state != SELECTING:
            return "no_selecting_plan"
        if plan.deadline_ms and now >= plan.deadline_ms:
            return "plan_expired"
        if plan.hospitals and ctx.config.hospital_id not in plan.hospitals:
            return "hospital_not_in_plan"
        if state.busy_round is not None:
            return "busy"
        if now < state.retry_at_ms:
            return "retry_later"
        pending = state.pending_checkin
        if (
            pending is not None
            and pending[0] == plan.round_id
            and now - pending[1] < ctx.config.checkin_timeout_ms
        ):
            return "awaiting_answer"
        if ctx.ledger.has(state.model, plan.round_id):
            return "already_taken_part"
        if ctx.store.counts(state.model, ctx.now()).labelled == 0:
            return "no_labelled_examples"
        decision = self._policy.check(self._conditions.conditions(self._conditions_clock()))
        if not decision.eligible:
            return "ineligible:" + ",".join(decision.reasons)
        return None

    async def maybe_check_in(self, state: ModelState) -> None:
        """Send a check-in for ``state``'s plan unless something blocks it; never raises."""
        ctx = self._ctx
        try:
            blocker = self.blocker(state)
        except SdkError as exc:
            ctx.log.warning("checkin.skipped", model=state.model, error=str(exc))
            return
        if blocker is not None or state.plan is None:
            return
        c = self._conditions.conditions(self._conditions_clock())
        msg = CheckIn(
            device_id=ctx.config.device_id,
            hospital_id=ctx.config.hospital_id,
            models=(state.model,),
            runtime_version=_runtime_version(),
            sdk_version=SDK_VERSION,
            charging=c.charging,
            unmetered=c.unmetered_network,
            idle=c.idle,
            battery_pct=float(min(100.0, max(0.0, c.battery_level * 100))),
            free_memory_mb=max(0, int(c.free_memory_mb)),
            sent_at_ms=ctx.clock(),
        )
        state.pending_checkin = (state.plan.round_id, msg.sent_at_ms)
        topic = checkin_topic(ctx.config.hospital_id, ctx.config.device_id)
        try:
            await ctx.bus.publish(topic, encode(msg))
        except BusError as exc:
            state.pending_checkin = None
            ctx.stats.bus_errors += 1
            ctx.log.warning("bus.error", what="checkin", error=str(exc))
            return
        ctx.stats.checkins += 1
        ctx.log.info("checkin.sent", model=state.model, round=state.plan.round_id)


def _runtime_version() -> str:
    import onnxruntime

    return f"onnxruntime-{onnxruntime.__version__}"
