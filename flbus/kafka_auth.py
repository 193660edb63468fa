"""Who the Kafka bus is to the broker: SASL/SCRAM credentials, and why a broker refused us.

Without credentials the bus speaks PLAINTEXT, as to a local unsecured broker.
With them it speaks SASL_PLAINTEXT and authenticates with SCRAM-SHA-512 (the
password never crosses the wire; add TLS to hide the traffic itself).

aiokafka reports a refused login at bootstrap only as "Unable to bootstrap",
so :func:`refusal` connects once more by hand to say which it was: wrong
credentials, or credentials missing for a broker that wants them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class KafkaCredentials:
    """A SASL user of the broker (one per role instance, see ``docs/security.md``)."""

    username: str
    password: str = field(repr=False)
    mechanism: str = MECHANISM


def client_security(credentials: KafkaCredentials | None) -> dict[str, Any]:
    """aiokafka client arguments for ``credentials`` (PLAINTEXT when None)."""
    if credentials is None:
        return {"security_protocol": "PLAINTEXT"}
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": credentials.mechanism,
        "sasl_plain_username": credentials.username,
        "sasl_plain_password": credentials.password,
    }


async def refusal(
    bootstrap: str, credentials: KafkaCredentials | None, timeout: float = 5.0
) -> str | None:
    """Why the first bootstrap server refuses us, or None if it does not (or cannot say)."""
    # Here, not at the top: settings import this module, and only a process that
    # opens a bus needs aiokafka.
    from aiokafka import errors as kerr
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    conn = None
    try:
        async with asyncio.timeout(timeout):
            # With credentials, connecting authenticates; without, a metadata request
            # is the first thing a SASL listener refuses (it drops the connection).
            conn = await create_conn(host, int(port), **client_security(credentials))
            if credentials is None:
                await conn.send(MetadataRequest([]))
    except (kerr.SaslAuthenticationFailed, kerr.AuthenticationFailedError) as exc:
        return f"the broker refused user {credentials and credentials.username!r}: {exc}"
    except kerr.UnsupportedSaslMechanismError as exc:
        return str(exc)
    except kerr.KafkaConnectionError:
        if conn is not None and credentials is None:
            return "the broker wants authentication (set FL_KAFKA_USERNAME and FL_KAFKA_PASSWORD)"
        return None
    except (kerr.KafkaError, OSError, TimeoutError, ValueError):
        return None
    finally:
        if conn is not None:
            conn.close()
    return None
