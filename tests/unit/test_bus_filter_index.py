"""FilterIndex finds exactly the filters that ``matches`` accepts, and forgets removed ones."""

import itertools
import random

import pytest

from flbus.mqtt_match import FilterIndex, matches

pytestmark = pytest.mark.unit

LEVELS = ("a", "b", "$s", "")


def _filters(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        depth = rng.randint(1, 4)
        levels = [rng.choice((*LEVELS, "+", "+")) for _ in range(depth)]
        if rng.random() < 0.3:
            levels[-1] = "#"
        out.append("/".join(levels))
    return out


def _topics() -> list[str]:
    return [
        "/".join(levels)
        for depth in range(1, 5)
        for levels in itertools.product(LEVELS, repeat=depth)
    ]


def test_index_agrees_with_the_reference_matcher_on_every_topic() -> None:
    rng = random.Random(7)
    filters = sorted(set(_filters(rng, 300)))
    index = FilterIndex()
    for flt in filters:
        index.add(flt)
    for topic in _topics():
        want = sorted(f for f in filters if matches(f, topic))
        assert sorted(index.match(topic)) == want, topic


def test_a_filter_added_twice_stays_until_removed_twice() -> None:
    index = FilterIndex()
    for flt in ("a/+/c", "a/+/c", "a/b/c", "#"):
        index.add(flt)
    index.discard("a/+/c")
    assert sorted(index.match("a/b/c")) == ["#", "a/+/c", "a/b/c"]
    for flt in ("a/+/c", "a/b/c", "#"):
        index.discard(flt)
    assert index.match("a/b/c") == [] and len(index) == 0
    index.discard("never/added")  # a no-op, not an error


def test_removing_a_filter_leaves_its_neighbours_in_the_trie() -> None:
    index = FilterIndex()
    for flt in ("a/+", "a/+/c/#", "+/b"):
        index.add(flt)
    index.discard("a/+/c/#")
    assert sorted(index.match("a/b")) == ["+/b", "a/+"]
    assert index.match("a/b/c") == []
    index.discard("a/+")
    assert index.match("a/b") == ["+/b"]


def test_dollar_topics_escape_only_root_wildcards() -> None:
    index = FilterIndex()
    for flt in ("#", "+/x", "$SYS/#", "$SYS/+"):
        index.add(flt)
    assert sorted(index.match("$SYS/x")) == ["$SYS/#", "$SYS/+"]
    assert sorted(index.match("a/x")) == ["#", "+/x"]
