"""MQTT topic-filter matching, shared by the in-memory bus and the MQTT adapter.

:func:`matches` tests one filter against one topic. :class:`FilterIndex` finds
every filter a topic matches in time independent of how many filters are held,
as brokers do: exact filters in a dict, wildcard filters in a trie with one
level per node and ``+`` / ``#`` children.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

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


@dataclass(eq=False, slots=True)
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    filter: str | None = None  # the wildcard filter ending at this node, if any


class FilterIndex:
    """A multiset of valid filters; :meth:`match` lists those a topic matches.

    Adding a filter twice needs removing it twice. ``match`` costs a dict lookup
    plus a walk of the trie bounded by the topic's depth and the wildcard
    branches that actually match, never a pass over every filter.
    """

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._exact: set[str] = set()
        self._root = _Node()

    def __len__(self) -> int:
        return len(self._count)

    def __contains__(self, topic_filter: object) -> bool:
        return topic_filter in self._count

    def add(self, topic_filter: str) -> None:
        """Hold one more reference to ``topic_filter`` (checked by the caller)."""
        n = self._count.get(topic_filter, 0)
        self._count[topic_filter] = n + 1
        if n:
            return
        if "+" not in topic_filter and "#" not in topic_filter:
            self._exact.add(topic_filter)
            return
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.setdefault(level, _Node())
        node.filter = topic_filter

    def discard(self, topic_filter: str) -> None:
        """Drop one reference to ``topic_filter``; the last one removes it."""
        n = self._count.get(topic_filter, 0)
        if n > 1:
            self._count[topic_filter] = n - 1
            return
        if not n:
            return
        del self._count[topic_filter]
        if topic_filter in self._exact:
            self._exact.discard(topic_filter)
            return
        path = [self._root]
        levels = topic_filter.split("/")
        for level in levels:
            path.append(path[-1].children[level])
        path[-1].filter = None
        for i in range(len(levels), 0, -1):  # prune branches left empty
            node = path[i]
            if node.filter is not None or node.children:
                break
            del path[i - 1].children[levels[i - 1]]

    def match(self, topic: str) -> list[str]:
        """Every held filter that ``topic`` matches (each once, in no set order)."""
        found = [topic] if topic in self._exact else []
        if self._root.children:
            levels = topic.split("/")
            self._walk(self._root, levels, 0, topic.startswith("$"), found)
        return found

    def _walk(self, node: _Node, levels: list[str], i: int, dollar: bool, found: list[str]) -> None:
        children = node.children
        wild = not (dollar and i == 0)  # '$' topics escape a leading wildcard (MQTT 4.7.2)
        if wild and (hashed := children.get("#")) is not None and hashed.filter is not None:
            found.append(hashed.filter)  # '#' also matches the parent level itself
        if i == len(levels):
            if node.filter is not None:
                found.append(node.filter)
            return
        child = children.get(levels[i])
        if child is not None:
            self._walk(child, levels, i + 1, dollar, found)
        if wild and (plus := children.get("+")) is not None:
            self._walk(plus, levels, i + 1, dollar, found)
