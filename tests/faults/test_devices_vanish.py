"""30% of devices vanish mid-round and some train slower than the deadline: rounds close."""

from __future__ import annotations

from collections import defaultdict

from schemas import ModelUpdate, TrainingFailure
from schemas.topics import updates_topic
from tests.faults.harness import HOSPITALS, MODEL, Federation


async def test_vanishing_and_slow_devices_rounds_close_and_counts_add_up(
    federation: Federation,
) -> None:
    # Training a round takes ~0.05-0.2 s here; up to 400x slower puts about a fifth of
    # the devices past a 10 s deadline (the slowdown is seeded per device).
    federation.start(
        env={
            "devices": {
                "FL_DEVICES_PER_HOSPITAL": "5",
                "FL_DROPOUT": "0.3",
                "FL_MAX_SLOWDOWN": "400",
            },
            "coordinator": {"FL_DEVICES_PER_HOSPITAL": "5"},
        }
    )
    await federation.wait_versions(3, timeout=150)
    updates = await federation.plane(*(updates_topic(h) for h in HOSPITALS))
    plane = await federation.plane()

    last = plane.final_states()
    closed = sorted(r for r, p in last.items() if p.state in ("done", "abandoned"))
    assert all(last[r].state == "done" for r in closed), {r: last[r].reason for r in closed}

    vanished: dict[tuple[int, str], set[str]] = defaultdict(set)
    for e in federation.roles["devices"].events("device.dropped"):
        if e.get("model") == MODEL:
            vanished[(e["round"], e["hospital"])].add(e["device"])
    totals = defaultdict(int)
    for round_id in closed:
        for h in HOSPITALS:
            key = (round_id, h)
            admitted = {
                a.device_id
                for a in plane.audit("device.admitted")
                if a.round_id == round_id and a.hospital_id == h and a.model == MODEL
            }
            uploaded = {
                u.device_id
                for u in updates.of(ModelUpdate)
                if u.round_id == round_id and u.hospital_id == h and u.model == MODEL
            }
            failed = {
                f.device_id
                for f in updates.of(TrainingFailure)
                if f.round_id == round_id and f.hospital_id == h and f.model == MODEL
            }
            late = {
                a.device_id
                for a in plane.audit("update.rejected")
                if a.round_id == round_id and a.hospital_id == h and a.reason == "closed_round"
            }
            reported = sum(
                p.num_updates
                for p in plane.partials()
                if p.round_id == round_id and p.hospital_id == h
            )
            gone = vanished[key]
            fates = f"admitted {sorted(admitted)} uploaded {sorted(uploaded)} failed " \
                    f"{sorted(failed)} vanished {sorted(gone)} late {sorted(late)}"  # fmt: skip
            # Every admitted device did exactly one thing, and every upload was counted
            # in the partial or refused as late with its reason.
            assert uploaded | failed | gone == admitted, f"round {round_id} {h}: {fates}"
            assert not (uploaded & failed or uploaded & gone or failed & gone), fates
            assert reported + len(late & uploaded) == len(uploaded), (
                f"round {round_id} {h}: partial counts {reported}; {fates}"
            )
            totals["admitted"] += len(admitted)
            totals["reported"] += reported
            totals["dropped"] += len(gone) + len(failed)
            totals["late"] += len(late & uploaded)
    print(f"[faults] vanish/slow devices over rounds {closed}: {dict(totals)}")
    assert totals["reported"] + totals["dropped"] + totals["late"] == totals["admitted"]
    assert totals["dropped"] > 0, f"no device vanished or missed the deadline: {dict(totals)}"
