"""The long-lived services' garbage-collector setting (the collector and the stream worker).

Python's cyclic collector at its defaults runs a young pass every 700 net container
allocations. A 100-event request (~1,000 containers in flight) or a fetched run of decoded
events (thousands of dicts) set off a pass per request or thousands per 100k events, each
promoting live work to older generations, with full passes walking everything: ~60 µs per
batch request in the collector, ~10 CPU-µs per event in the stream worker (docs/stream.md
"Garbage collector"; issue 16). Their objects hold no cycles and are freed by reference
counting, so rarer young passes free the same memory, and the cyclic garbage left waiting
stays bounded by the threshold.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 10, 10)


def freeze_and_tune() -> None:
    """Everything imported and built by now lives as long as the process: frozen, so no full
    pass walks it again; young passes become rarer (``GC_THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
