"""No fault at all: the roles as separate processes, every device online, rounds on time.

The README's "Running the roles separately": a coordinator, two selectors, one
aggregator per hospital and ``flctl devices``, each its own process on real
brokers. With every device online each round must close because every
hospital reached its goal (the reason the coordinator records says so, and the
partials' counts agree) long before its deadline. Devices check in within
milliseconds of ``round.opened``, often before a selector has read the new
plan; such a check-in must be parked until the plan arrives, not sent away for
half a minute (the round would then run to its deadline short of its goals).
"""

from __future__ import annotations

from collections import Counter

from tests.faults.harness import HOSPITALS, MODEL, Federation

ROUNDS = 5
TIMEOUT_S = 10  # the harness's FL_ROUND_TIMEOUT
WITHIN = 0.5  # of the round's timeout, at most


async def test_every_round_reaches_its_goals_well_before_its_deadline(
    federation: Federation,
) -> None:
    federation.start(selectors=2)
    # The first round may open before the devices run; judge the rounds after it.
    plane = await federation.wait_versions(ROUNDS + 1, timeout=150)
    done = sorted(r for r, p in plane.final_states().items() if p.state == "done")[1:]
    assert len(done) >= ROUNDS, f"rounds done: {done}\n{federation.logs()}"
    closed_at = {}
    for e in plane.entries:
        msg = e.msg
        if getattr(msg, "model", None) == MODEL and getattr(msg, "state", None) == "done":
            closed_at.setdefault(msg.round_id, e.at_ms)
    admitted = Counter(
        (a.round_id, a.hospital_id) for a in plane.audit("device.admitted") if a.model == MODEL
    )
    reported = {(p.round_id, p.hospital_id): p.num_updates for p in plane.partials()}
    deferred = [
        e
        for e in federation.roles["devices"].events("checkin.deferred")
        if e.get("reason") == "no_open_round"
    ]
    rows, wrong = [], []
    for round_id in done[:ROUNDS]:
        plan = plane.final_states()[round_id]
        took_s = (closed_at[round_id] - plan.opened_at_ms) / 1000
        deadline_s = (plan.deadline_ms - plan.opened_at_ms) / 1000
        goals = dict(zip(plan.hospitals, plan.targets, strict=True))
        counts = {
            h: f"{reported.get((round_id, h))}/{goals.get(h)}/{admitted[(round_id, h)]}"
            for h in HOSPITALS
        }
        rows.append(
            f"[faults] round {round_id}: closed after {took_s:5.2f} s of {deadline_s:.0f} s "
            f"({plan.reason}); reported/goal/admitted {counts}"
        )
        if plan.reason != "all hospitals reported":
            wrong.append(f"round {round_id}: {plan.reason}")
        for h in HOSPITALS:
            if not 0 < goals.get(h, 0) <= (reported.get((round_id, h)) or 0):
                wrong.append(f"round {round_id} {h}: goal not reached ({counts[h]})")
        if took_s >= WITHIN * deadline_s or deadline_s > TIMEOUT_S + 1:
            wrong.append(f"round {round_id}: {took_s:.1f} s of {deadline_s:.0f} s")
    print("\n".join(rows))
    # The race itself: no device was sent away because its selector lagged the plan.
    print(f"[faults] check-ins deferred for no open round: {len(deferred)}")
    assert not wrong, "\n".join([*wrong, *rows])
    assert not deferred, deferred[:3]
