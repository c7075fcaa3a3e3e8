"""Short and few garbage collections in a long-running process: the start-up heap frozen, the
youngest collections spaced out.

A worker allocates most of its long-lived objects at start (the imported libraries, the Dask
client, the model's code) and then, batch after batch, many short-lived ones. CPython's full
collections walk every tracked object, so each one walked the whole start-up heap again, and a
batch that met one waited for it: on the 2-core VM the end-to-end p99 was about four times the
p50. :func:`freeze_startup_heap` collects what start-up left behind, then moves every surviving
object into the permanent generation (``gc.freeze()``), which collections skip. Frozen objects
are still freed when their reference count drops to zero; only a cycle among them would stay.

The driver then allocates a consumed message object per record, and each lives until its batch
is committed: hundreds of thousands at once. With CPython's default thresholds (a young
collection every 700 allocations, an older one every ten of those) they are walked again and
again, and promoted until full collections walk them all. In a probe of the driver's own work
(consume, check, join, offsets, commit; no Dask) with eight batches of 50,000 float32 records
alive, the collector took 45% of the time: 10 full collections per million records, of up to
131 ms each, a stall of every thread. :func:`spaced_out_collections` lets
:data:`YOUNG_COLLECTION_EVERY` allocations pass between young collections instead: in the same
probe, 417,000 → 662,000 records/s, one full collection (109 ms), one of the middle generation
(60 ms) and three young ones (at most 21 ms). :class:`CollectionTimer` measures what the
collector still takes (the worker exports it as ``knnstream_gc_seconds_total``).
"""

from __future__ import annotations

import gc
import importlib
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
# Allocations between two young collections (CPython's default: 700). A young collection then
# walks at most this many objects (up to about 20 ms); the middle generation's, ten times as many.
YOUNG_COLLECTION_EVERY = 100_000


def freeze_startup_heap(import_first: Iterable[str] = ()) -> int:
    """Import ``import_first`` (modules the process will load anyway), collect, and freeze what
    is left; returns how many objects are frozen in all."""
    for module in import_first:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d start-up objects out of the garbage collector's way", frozen)
    return frozen


@contextmanager
def spaced_out_collections(young_every: int = YOUNG_COLLECTION_EVERY) -> Iterator[None]:
    """Within: ``young_every`` allocations between young collections; the older generations'
    thresholds (counted in young collections) are kept, and everything is as before after."""
    previous = gc.get_threshold()
    gc.set_threshold(young_every, previous[1], previous[2])
    log.info("young garbage collections every %d allocations", young_every)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


class CollectionTimer:
    """Seconds the garbage collector ran, and its runs, per generation, in this process.

    The callback only adds to plain numbers: a collection can start at any allocation, also
    while a thread holds a metric's lock, so the metrics read these totals when scraped. The
    seconds are the collecting thread's CPU time: by the time the callback that ends a collection
    runs, another thread may have taken the interpreter for a while, and wall-clock time would
    count that too.
    """

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Count the collections that run within."""
        gc.callbacks.append(self._on_collection)
        try:
            yield
        finally:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        generation = info["generation"]
        self.seconds[generation] += time.thread_time() - self._started
        self.collections[generation] += 1
