"""The start-up heap frozen out of the garbage collector's way; what comes later is still collected."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from stream.heap import freeze_startup_heap, spaced_out_collections


class Node:
    """A container the collector tracks."""

    partner: object = None


@pytest.fixture(autouse=True)
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process goes on with an ordinary heap


def _tracked(thing: object) -> bool:
    """Whether the collector's generations hold ``thing`` (frozen objects are in none of them)."""
    return any(candidate is thing for candidate in gc.get_objects())


def test_objects_made_before_the_freeze_are_out_of_the_collectors_way_and_later_ones_are_not() -> None:
    before = Node()
    assert _tracked(before)
    frozen = freeze_startup_heap(["xml.dom.minidom"])
    after = Node()
    assert "xml.dom.minidom" in sys.modules
    assert frozen > 1000
    assert not _tracked(before)
    assert _tracked(after)


def test_a_cycle_made_after_the_freeze_is_still_collected() -> None:
    freeze_startup_heap()
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    del first, second
    assert gc.collect() >= 2


def test_young_collections_are_spaced_out_within_and_as_before_after() -> None:
    before = gc.get_threshold()
    with spaced_out_collections(50_000):
        assert gc.get_threshold() == (50_000, before[1], before[2])
    assert gc.get_threshold() == before
