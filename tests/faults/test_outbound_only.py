"""An outbound-only hospital: its aggregator and devices behind a firewall that admits nothing.

Hospitals rarely accept inbound connections. Here hospital h0's aggregator and
the simulated devices run (``ip netns exec``) in a network namespace whose
iptables INPUT chain drops every packet that is not loopback or a reply to a
connection the namespace opened; the brokers, the coordinator, the selector
and h1's aggregator run on the host, the brokers bound to the host end of the
veth so the namespace can reach them. (``flctl devices`` runs the whole seeded
split in one process, so h1's devices sit behind the firewall too.) Before any
role starts, a listener inside the namespace is shown reachable without the
firewall and unreachable with it. Rounds must then complete with h0's partials
counted, and at the end no socket listens inside and no inbound connection was
tried beyond the probe.

Needs root and iproute2: skipped with the reason otherwise, failed under CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from flctl.brokers import free_port
from tests.faults.harness import HOSPITALS, MODEL, Federation
from tests.support import netns

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]

INSIDE, OUTSIDE = HOSPITALS  # h0 lives in the namespace, h1 on the host
ROUNDS = 3


@pytest.fixture
def hospital_net() -> Iterator[netns.OutboundOnly]:
    """A fresh namespace for hospital h0 (no firewall yet), removed after the test."""
    reason = netns.unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no network namespace could be made: {reason}", pytrace=False)
        pytest.skip(reason)
    with netns.outbound_only() as ns:
        yield ns


@pytest.fixture
def broker_host(hospital_net: netns.OutboundOnly) -> str:
    """The brokers listen on the host end of the veth: the only way out of the namespace."""
    return hospital_net.host_ip


async def test_outbound_only_hospital_completes_rounds(
    hospital_net: netns.OutboundOnly, federation: Federation
) -> None:
    ns = hospital_net
    port = free_port()
    with ns.listener(port):
        assert ns.connects_from_host(port), "the probe cannot reach the namespace at all"
        ns.refuse_inbound()
        assert not ns.connects_from_host(port), "the firewall let an inbound connection in"
    probe_syns = ns.refused_syns()
    assert probe_syns > 0, "the refused probe left no trace on the SYN rule"

    federation.role("coordinator", ["coordinator"])
    federation.role("selector0", ["selector"])
    federation.role(f"aggregator-{OUTSIDE}", ["aggregator"], FL_HOSPITAL=OUTSIDE)
    federation.role(f"aggregator-{INSIDE}", ["aggregator"], prefix=ns.prefix, FL_HOSPITAL=INSIDE)
    federation.role("devices", ["devices"], prefix=ns.prefix)
    plane = await federation.wait_versions(ROUNDS + 1, timeout=200)

    partials = {(p.round_id, p.hospital_id): p for p in plane.partials()}
    closed = {
        e["round"]: e["examples"] for e in federation.roles["coordinator"].events("round.closed")
    }
    rows, counted = [], []
    for round_id, plan in sorted(plane.final_states().items()):
        if plan.state != "done" or round_id not in closed:
            continue
        inside = partials.get((round_id, INSIDE))
        summed = sum(p.num_examples for (r, _), p in partials.items() if r == round_id)
        rows.append(
            f"round {round_id}: {plan.reason}; {INSIDE} updates "
            f"{inside.num_updates if inside else None}, examples {closed[round_id]} "
            f"(partials sum {summed})"
        )
        if inside is not None and inside.num_updates > 0 and closed[round_id] == summed:
            counted.append(round_id)
    print("".join(f"\n[faults] outbound-only {row}" for row in rows))
    assert len(counted) >= ROUNDS, f"{MODEL}: rounds with {INSIDE} counted: {counted}\n" + (
        "\n".join(rows) + "\n" + federation.logs()
    )

    # Nothing inside listens, and nothing but the probe ever tried to connect in.
    assert ns.tcp_listeners() == []
    assert ns.refused_syns() == probe_syns
    for name in (f"aggregator-{INSIDE}", "devices"):
        assert federation.roles[name].alive, f"{name} died\n{federation.roles[name].tail()}"
