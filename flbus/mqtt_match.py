"""MQTT topic-filter matching, shared by the in-memory bus and the MQTT adapter."""

import functools

from flbus.errors import TopicError


def check_filter(topic_filter: str) -> None:
    """Raise TopicError unless ``topic_filter`` is a valid MQTT filter."""
    if not topic_filter:
        raise TopicError("empty topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicError(f"'#' must be a whole last level: {topic_filter!r}")
        if "+" in level and level != "+":
            raise TopicError(f"'+' must be a whole level: {topic_filter!r}")


def check_topic(topic: str) -> None:
    """Raise TopicError unless ``topic`` is a concrete topic one can publish to."""
    if not topic or "+" in topic or "#" in topic:
        raise TopicError(f"cannot publish to {topic!r}: empty or has a wildcard")


@functools.lru_cache(maxsize=65_536)
def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT ``topic_filter``."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    # Topics starting with '$' are not matched by a leading wildcard (MQTT 4.7.2).
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)
