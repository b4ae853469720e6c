"""The long-lived services' garbage-collector setting (the collector and the stream worker).

Python's cyclic collector at its defaults runs a young pass every 700 net container
allocations. A 100-event request (~1,000 containers in flight) or a fetched run of decoded
events (thousands of dicts) set off a pass per request or thousands per 100k events, each
promoting live work to older generations, with full passes walking everything: ~60 µs per
batch request in the collector, ~10 CPU-µs per event in the stream worker (docs/stream.md
"Garbage collector"; issue 16). Their objects hold no cycles and are freed by reference
counting, so rarer young passes free the same memory, and the cyclic garbage left waiting
stays bounded by the threshold.

The stream worker's survivors are its state (a dict per person with assignments, their
tuples): every young and middle pass walked them again, ~3% of the worker's time. After each
committed cut (``cut_committed``) everything alive is frozen instead, so no pass walks it;
every ``FULL_PASS_CUTS`` cuts it is unfrozen and one full pass collects the cycles that
became garbage meanwhile (the bound on what waits).
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 10, 10)
# the stream worker's, with its state frozen after each cut: a young pass walks what
# survived since the last freeze; between write rounds (~1 s of folding at the bench's rate)
# that is more than 50,000 containers, so at that threshold the passes still walked the state
PER_CUT_THRESHOLDS = (200_000, 10, 10)
FULL_PASS_CUTS = 200


class CutFreezing:
    """Freeze after each cut, a full pass every ``every`` cuts; inert until ``enable``."""

    def __init__(self, every: int = FULL_PASS_CUTS) -> None:
        self.every, self.cuts, self.enabled = every, 0, False

    def enable(self) -> None:
        self.enabled = True

    def cut_committed(self) -> None:
        if not self.enabled:
            return
        self.cuts += 1
        if self.cuts % self.every == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()


# the process's: the stream worker enables it (``freeze_and_tune(per_cut=True)``)
FREEZING = CutFreezing()


def freeze_and_tune(per_cut: bool = False) -> None:
    """Everything imported and built by now lives as long as the process: frozen, so no full
    pass walks it again; young passes become rarer (``GC_THRESHOLDS``). ``per_cut``: the
    stream worker's state frozen after each cut too (module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*(PER_CUT_THRESHOLDS if per_cut else GC_THRESHOLDS))
    if per_cut:
        FREEZING.enable()
