"""Kafka ACLs created over the Admin protocol (CreateAcls), as a super user.

aiokafka 0.14 carries the CreateAcls request but no admin method for it, so
:func:`create_acls` sends the request itself, one binding per request over
one admin connection (a few milliseconds each). That spares the broker's
``kafka-acls`` tool: no extra jars, and no JVM start per role on a slow
machine. Creating a binding that exists already is a no-op for the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from flbus.errors import BrokerUnavailableError
from flbus.kafka_auth import KafkaCredentials, client_security
from flbus.kafka_errors import kafka_error, mapped, quietly

Resource = Literal["topic", "group", "cluster"]
Operation = Literal["read", "write", "create", "describe", "idempotent_write"]

# Codes of Kafka's AclOperation, ResourceType, PatternType and AclPermissionType.
_OPERATIONS: dict[str, int] = {
    "read": 3,
    "write": 4,
    "create": 5,
    "describe": 8,
    "idempotent_write": 12,
}
_RESOURCES: dict[str, int] = {"topic": 2, "group": 3, "cluster": 4}
_LITERAL, _PREFIXED, _ALLOW = 3, 4, 3


@dataclass(frozen=True, slots=True)
class Acl:
    """Allow ``user`` to ``operation`` on the ``resource`` named ``name`` (or prefixed by it)."""

    user: str
    resource: Resource
    name: str
    operation: Operation
    prefixed: bool = False

    def line(self) -> str:
        """One readable line, e.g. ``User:selector write topic fl.v1.checkins``."""
        pattern = " (prefix)" if self.prefixed else ""
        return f"User:{self.user} {self.operation} {self.resource} {self.name}{pattern}"


async def create_acls(
    bootstrap: str, admin: KafkaCredentials, acls: Iterable[Acl], timeout: float = 30.0
) -> int:
    """Create every ACL as the super user ``admin``; the number created (existing ones count).

    Raises AccessDeniedError when ``admin`` may not create ACLs, a BusError otherwise.
    """
    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="flbus-acl", **client_security(admin)
    )
    count = 0
    try:
        async with asyncio.timeout(timeout):
            with mapped(f"create ACLs at {bootstrap}"):
                await client.start()
                for acl in acls:
                    request = CreateAclsRequest(
                        _RESOURCES[acl.resource],
                        "kafka-cluster" if acl.resource == "cluster" else acl.name,
                        _PREFIXED if acl.prefixed else _LITERAL,
                        f"User:{acl.user}",
                        "*",
                        _OPERATIONS[acl.operation],
                        _ALLOW,
                    )
                    response = await client._send_request(request)
                    for code, message in response.creation_responses:
                        if code:
                            exc = kerr.for_code(code)(message)
                            raise kafka_error(f"create ACL {acl.line()!r}", exc)
                    count += 1
    except TimeoutError:
        raise BrokerUnavailableError(
            f"creating ACLs at {bootstrap} took over {timeout:g}s"
        ) from None
    finally:
        await quietly(client.close())
    return count
