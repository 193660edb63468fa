"""Errors raised by the buses.

Every adapter translates its client library's errors (paho, aiokafka) into this
hierarchy at one place, so callers never catch a library type::

    BusError
    ├── BusClosedError          the bus or subscription was stopped / closed
    ├── BrokerUnavailableError  the broker cannot be reached (after retries)
    ├── PublishError            the broker did not acknowledge a publish
    ├── TopicError              a topic name or filter the bus cannot use
    └── AccessDeniedError       the broker refused our credentials, or its ACLs the operation
"""


class BusError(Exception):
    """Base class of every bus error."""


class BusClosedError(BusError):
    """The bus or the subscription was stopped or closed."""


class BrokerUnavailableError(BusError):
    """The broker could not be reached."""


class PublishError(BusError):
    """The broker did not acknowledge a publish."""


class TopicError(BusError):
    """A topic name or filter is not usable on this bus."""


class AccessDeniedError(BusError):
    """The broker refused the credentials, or its ACLs refused this principal the operation."""
