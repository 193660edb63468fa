"""The one place where aiokafka's errors become flbus errors (see ``flbus.errors``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from aiokafka import errors as kerr

from flbus.errors import (
    AccessDeniedError,
    BrokerUnavailableError,
    BusClosedError,
    BusError,
    PublishError,
    TopicError,
)

log = structlog.get_logger("flbus.kafka")

# Authentication failed, or an ACL denied the operation: never retried, never a TopicError.
_DENIED = (
    kerr.SaslAuthenticationFailed,
    kerr.AuthenticationFailedError,
    kerr.UnsupportedSaslMechanismError,
    kerr.IllegalSaslStateError,
    kerr.TopicAuthorizationFailedError,
    kerr.GroupAuthorizationFailedError,
    kerr.ClusterAuthorizationFailedError,
    kerr.TransactionalIdAuthorizationFailed,
)


def denied(exc: BaseException) -> bool:
    """True when ``exc`` (or the error it wraps) is an authentication or ACL refusal."""
    seen: BaseException | None = exc
    for _ in range(4):  # aiokafka wraps a SASL failure in a connection error
        if seen is None:
            return False
        if isinstance(seen, _DENIED):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def kafka_error(what: str, exc: BaseException) -> BusError:
    """Translate an aiokafka (or asyncio) exception into a BusError."""
    text = f"{what}: {exc.__class__.__name__}: {exc}"
    if isinstance(exc, BusError):
        return exc
    if denied(exc):
        return AccessDeniedError(f"{what}: access denied ({exc.__class__.__name__}: {exc})")
    if isinstance(exc, kerr.ConsumerStoppedError):
        return BusClosedError(text)
    if isinstance(
        exc,
        kerr.MessageSizeTooLargeError
        | kerr.RecordTooLargeError
        | kerr.RecordListTooLargeError
        | kerr.NotEnoughReplicasError
        | kerr.NotEnoughReplicasAfterAppendError,
    ):
        return PublishError(text)
    if isinstance(
        exc,
        kerr.InvalidTopicError
        | kerr.UnknownTopicOrPartitionError
        | kerr.InvalidPartitionsError
        | kerr.InvalidReplicationFactorError
        | kerr.PolicyViolationError,
    ):
        return TopicError(text)
    if isinstance(
        exc,
        kerr.KafkaConnectionError
        | kerr.NodeNotReadyError
        | kerr.KafkaUnavailableError
        | kerr.BrokerNotAvailableError
        | TimeoutError
        | OSError,
    ):
        return BrokerUnavailableError(text)
    if isinstance(exc, AssertionError) and "partition" in str(exc):
        return TopicError(text)  # aiokafka asserts on a partition the topic lacks
    if isinstance(exc, kerr.KafkaTimeoutError | kerr.RequestTimedOutError):
        return PublishError(text) if what.startswith("publish") else BrokerUnavailableError(text)
    return BusError(text)


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Raise aiokafka's exceptions as BusErrors."""
    try:
        yield
    except BusError:
        raise
    except (kerr.KafkaError, OSError, TimeoutError, AssertionError) as exc:
        raise kafka_error(what, exc) from exc


async def quietly(aw: Any) -> None:
    """Await ``aw`` during teardown; an error is logged, never raised."""
    try:
        await aw
    except Exception as exc:  # teardown goes on; the cause is logged
        log.warning("kafka.teardown_error", error=repr(exc))
