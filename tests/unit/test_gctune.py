"""The stream worker's per-cut freezing (eventpipe.gctune): what is alive at a cut is not
walked again, and cyclic garbage frozen meanwhile is collected at the next full pass."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from eventpipe.gctune import CutFreezing


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test process collects as usual


def garbage_cycle() -> weakref.ref[Node]:
    return weakref.ref(Node())


def test_inert_until_enabled() -> None:
    freezing = CutFreezing(every=2)
    before = gc.get_freeze_count()
    freezing.cut_committed()
    assert gc.get_freeze_count() == before and freezing.cuts == 0


def test_a_cut_freezes_what_is_alive_and_the_full_pass_collects_its_garbage() -> None:
    freezing = CutFreezing(every=3)
    freezing.enable()
    cycle = garbage_cycle()
    freezing.cut_committed()  # cut 1: the garbage cycle is frozen with everything else
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert cycle() is not None  # frozen: no pass walks it
    freezing.cut_committed()
    assert cycle() is not None
    freezing.cut_committed()  # cut 3: unfrozen, one full pass, frozen again
    assert cycle() is None
    assert gc.get_freeze_count() > 0
