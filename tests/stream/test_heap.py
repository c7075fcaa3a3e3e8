"""The start-up heap frozen out of the garbage collector's way; what comes later is still collected."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from stream.heap import freeze_startup_heap


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process goes on with an ordinary heap


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_the_start_up_heap_is_frozen_after_the_modules_named_are_imported() -> None:
    frozen = freeze_startup_heap(["xml.dom.minidom"])
    assert "xml.dom.minidom" in sys.modules
    assert frozen > 1000 and gc.get_freeze_count() > 1000  # a frozen object may be freed meanwhile


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_a_cycle_made_after_the_freeze_is_still_collected() -> None:
    freeze_startup_heap()

    class Node:
        partner: object = None

    first, second = Node(), Node()
    first.partner, second.partner = second, first
    del first, second
    assert gc.collect() >= 2
