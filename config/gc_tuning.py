"""Garbage collector settings of a server process, applied once it has loaded everything (config/asgi.py).

Measured on the bench's 50-conversation page in one process (Python 3.11, default thresholds 700/10/10): a
request ran about 20 young collections, and a full collection came every ~6 requests, walking the whole heap of
the process (Django, the schema, graphql-core: ~140,000 tracked objects after startup), 100-300 ms each: the p90
and p99 of a request were a collector pause. Now:

- `gc.freeze()` moves the startup heap out of the collector's reach (it is never garbage), so a full collection
  walks only what requests left behind: 25 ms for the garbage of 10 large pages instead of 170 ms.
- The young generation collects after 10,000 new container objects instead of 700: a large page (one or two
  collections instead of 20) finishes before its objects are promoted, so its cyclic garbage (model instances
  and their caches) is freed in the young generations, and a full collection comes every ~100 large pages.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def collect_young_if_due() -> int | None:
    """Runs the young collection the collector would run soon (its count past half the threshold) now, at a
    moment the caller knows to be idle; returns the generation collected, or None.

    A live event's allocations (on the live thread) triggered the young collection in the middle of about one event
    in a hundred (the bench's measurement 3: one per 103 events, 1.6-19 ms on a loaded machine), which then
    arrived that much later. Called between events, young collections come at most twice as often, each over
    fewer objects, and not on an event's path. It keeps the collector's own schedule of the older generations: a
    middle collection when the young ones since the last exceed its threshold, and it never makes a full
    collection (when one may be due, the collector decides, as it would have).
    """
    young, middle, old = gc.get_count()
    young_threshold, middle_threshold, old_threshold = gc.get_threshold()
    if young_threshold == 0 or young < young_threshold // 2:
        return None
    if middle <= middle_threshold:
        gc.collect(0)
        return 0
    if old <= old_threshold:
        gc.collect(1)
        return 1
    return None


def tune_for_serving() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
