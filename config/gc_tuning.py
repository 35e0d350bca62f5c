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


def tune_for_serving() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
