"""Who may do what on the service plane: the Kafka ACL table, the one source of the broker's
ACLs (``flctl brokers up --secure``) and of the table in ``docs/security.md``.

Each role instance is its own SASL user: ``coordinator``, ``selector`` and one
``aggregator-<hospital>`` per hospital; ``admin`` is the broker's super user
(topic and ACL set-up, ``flctl replay`` and ``flctl dlq``), no role runs as it.
``{hospital}`` in a row stands for every hospital of the deployment, except
in an aggregator's rows, where it is that aggregator's own hospital.

Besides the rows, a role may create exactly the topics it reads or writes
(the bus creates a missing topic on first use), and an idempotent producer
needs nothing more than a write grant (Kafka 3.0+, KIP-679).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flbus.kafka_acl import Acl, Operation, Resource
from schemas import topics
from schemas.topics import check_id
from services.coordinator.coordinator import GROUP as COORDINATOR_GROUP
from services.selector.app import BROADCAST_GROUP

ADMIN = "admin"
COORDINATOR = "coordinator"
SELECTOR = "selector"
AGGREGATOR = "aggregator"
HOSPITAL = "{hospital}"


@dataclass(frozen=True, slots=True)
class Grant:
    """One row: ``role`` may ``operation`` the ``resource`` named ``name`` (may hold {hospital})."""

    role: str
    operation: Operation
    resource: Resource
    name: str


def _rows(role: str, operation: Operation, resource: Resource, *names: str) -> list[Grant]:
    return [Grant(role, operation, resource, n) for n in names]


_PARTIALS = topics.KAFKA_PARTIALS_PREFIX + HOSPITAL
_UPDATES = topics.KAFKA_UPDATES_PREFIX + HOSPITAL
_EVERYONE_WRITES = (topics.KAFKA_AUDIT, topics.KAFKA_DEAD_LETTERS)

TABLE: tuple[Grant, ...] = (
    *_rows(COORDINATOR, "write", "topic", topics.KAFKA_ROUND_PLANS, topics.KAFKA_MODEL_VERSIONS,
           topics.KAFKA_ARTIFACTS, *_EVERYONE_WRITES),
    *_rows(COORDINATOR, "read", "topic", _PARTIALS, topics.KAFKA_AUDIT, topics.KAFKA_CHECKINS,
           topics.KAFKA_EVALUATIONS, topics.KAFKA_ROUND_PLANS),
    *_rows(COORDINATOR, "read", "group", COORDINATOR_GROUP),
    *_rows(AGGREGATOR, "write", "topic", _PARTIALS, *_EVERYONE_WRITES),
    *_rows(AGGREGATOR, "read", "topic", _UPDATES, _PARTIALS, topics.KAFKA_ROUND_PLANS,
           topics.KAFKA_MODEL_VERSIONS),
    *_rows(AGGREGATOR, "read", "group", f"aggregator.{HOSPITAL}"),
    *_rows(SELECTOR, "write", "topic", _UPDATES, topics.KAFKA_CHECKINS, topics.KAFKA_EVALUATIONS,
           *_EVERYONE_WRITES),
    *_rows(SELECTOR, "read", "topic", topics.KAFKA_ROUND_PLANS, topics.KAFKA_MODEL_VERSIONS,
           topics.KAFKA_ARTIFACTS),
    *_rows(SELECTOR, "read", "group", BROADCAST_GROUP),
)  # fmt: skip
"""The ACL table. Everything not granted here is denied (the broker's default)."""


def aggregator_user(hospital: str) -> str:
    """The SASL user of ``hospital``'s aggregator."""
    return f"{AGGREGATOR}-{check_id(hospital, 'hospital')}"


def users(hospitals: Sequence[str]) -> tuple[str, ...]:
    """Every SASL user of a deployment: the super user, then one per role instance."""
    return (ADMIN, COORDINATOR, SELECTOR, *map(aggregator_user, hospitals))


def _expand(grant: Grant, hospitals: Iterable[str]) -> list[str]:
    if HOSPITAL not in grant.name:
        return [grant.name]
    return [grant.name.replace(HOSPITAL, check_id(h, "hospital")) for h in hospitals]


def acls(hospitals: Sequence[str]) -> list[Acl]:
    """The table made concrete for ``hospitals``, with the create grants it implies."""
    out: dict[Acl, None] = {}
    for grant in TABLE:
        instances: list[tuple[str, tuple[str, ...]]]
        if grant.role == AGGREGATOR:
            instances = [(aggregator_user(h), (h,)) for h in hospitals]
        else:
            instances = [(grant.role, tuple(hospitals))]
        for user, theirs in instances:
            for name in _expand(grant, theirs):
                out[Acl(user, grant.resource, name, grant.operation)] = None
                if grant.resource == "topic":
                    out[Acl(user, "topic", name, "create")] = None
    return list(out)


def markdown() -> str:
    """The table as Markdown rows: role, operation, resource (for docs/security.md)."""
    lines = ["| user | may | on |", "|---|---|---|"]
    for role in (COORDINATOR, f"{AGGREGATOR}-{HOSPITAL}", SELECTOR):
        for operation in ("write", "read"):
            names = [
                f"{g.resource} `{g.name}`"
                for g in TABLE
                if g.role == role.split("-")[0] and g.operation == operation
            ]
            lines.append(f"| `{role}` | {operation} | {', '.join(names)} |")
    return "\n".join(lines) + "\n"
