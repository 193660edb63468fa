"""The coordinator opens rounds with a window and deadline fitted to the population it expects."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flcore.timing import ASSUMED_FANOUT_BYTES_PER_S
from services.coordinator import plans
from services.coordinator.config import RoundSettings
from tests.support.coordinator import running_coordinator

pytestmark = pytest.mark.unit


async def test_a_small_federation_keeps_the_configured_timing(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path) as h:
        plan = await h.next_plan("selecting")
        assert plan.deadline_ms - plan.opened_at_ms == 10_000


async def test_a_thousand_devices_get_a_longer_window_and_deadline(tmp_path: Path) -> None:
    population = {"h0": 500, "h1": 500}
    async with running_coordinator(tmp_path, population=population) as h:
        plan = await h.next_plan("selecting")
        assert plan.deadline_ms - plan.opened_at_ms > 10_000
        h.clock.now = plan.opened_at_ms + 3_000  # past the configured 1 s window
        await asyncio.sleep(0.2)  # ticks every 5 ms
        assert h.rounds.state is not None
        assert h.rounds.state.phase.value == "selecting", "the window closed on 1,000 devices"
        h.clock.now = plan.deadline_ms - 1
        await h.next_plan("training")  # still closes before the deadline


async def test_the_first_window_covers_the_artifacts_and_version_sent_ahead_of_it(
    tmp_path: Path,
) -> None:
    # Devices see the first plan only after the artifacts and version announced at start:
    # a window sized for check-ins alone closed before any of 300 devices saw round 1.
    population = {"h0": 500, "h1": 500}
    async with running_coordinator(tmp_path, population=population) as h:
        plan = await h.next_plan("selecting")
        assert h.rounds.state is not None
        window = h.rounds.state.plan.selection_deadline_ms - plan.opened_at_ms
        sent = 1_000 * (4 * h.rounds.manifest.total_size)  # at least the version, to each
        assert window >= check_ins_only(1_000) + sent / ASSUMED_FANOUT_BYTES_PER_S * 1000
        assert h.rounds.broadcast_bytes == 0, "the next round owes nothing to this broadcast"


def check_ins_only(devices: int) -> int:
    settings = RoundSettings(selection_window_ms=1_000, round_timeout_ms=10_000)
    return plans.timing({"h0": devices}, {"h0": devices}, settings).selection_window_ms
