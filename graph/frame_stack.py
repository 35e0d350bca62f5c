"""Runs GraphQL execution on an interpreter data-stack chunk of its own (a workaround for CPython gh-142183).

CPython 3.11 to 3.14 keep Python frames in "data stack" chunks of 16 KiB. A call that does not fit in what is
left of the current chunk maps a new chunk, and returning from the first frame of a chunk unmaps it again; no
chunk is kept for the next call (gh-142183, "Cache one datachunk per tstate to prevent alloc/dealloc thrashing",
fixed in 3.15 and backported to 3.13/3.14 point releases of 2026; 3.11 and 3.12 keep the bug). graphql-core's
executor recurses per field and list item, so when a request happens to start near a chunk's end, every field
that crosses the boundary maps and unmaps a chunk: measured on the bench's 50-conversation page, 400 to 7,800
minor page faults per request depending on the depth execution starts at, and up to twice the CPU.

`run_on_fresh_stack(fn, ...)` calls `fn` from a function whose frame declares a large value stack (which it never
uses). That frame never fits in what is left of a 16 KiB chunk, so the interpreter gives it a chunk of its own
sized to twice the frame: the frame sits at the chunk's start and everything `fn` calls runs in the untouched
rest of the chunk (`_ROOM` bytes), whatever the depth of the caller. Cost: one chunk mapped and unmapped per call;
only the pages the call really uses are touched (no local variables to clear).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# The interpreter's fix (a cached spare chunk per thread) makes the workaround pointless: drop it there.
NEEDED = sys.version_info < (3, 15)

_SLOT = 8  # bytes per frame slot (a pointer)
# The declared stack: 64 KiB. The chunk for it is the next power of two that holds it plus the interpreter's
# minimum overhead (1,000 slots in 3.11-3.14): 128 KiB, leaving about 64 KiB of frames for the call. The
# 50-conversation page needs less than 16 KiB of frames; Django's ORM below a resolver a few KiB more.
_DECLARED_SLOTS = 64 * 1024 // _SLOT
_ROOM = 128 * 1024 - _DECLARED_SLOTS * _SLOT

_inside = threading.local()


def _enter(fn: Callable[..., R], args: tuple, kwargs: dict) -> R:
    _inside.active = True
    try:
        return fn(*args, **kwargs)
    finally:
        _inside.active = False


_enter.__code__ = _enter.__code__.replace(co_stacksize=_enter.__code__.co_stacksize + _DECLARED_SLOTS)


def run_on_fresh_stack(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)`, with its frames on a data-stack chunk of their own (gh-142183); nested calls and
    interpreters with the fix call `fn` directly."""
    if not NEEDED or getattr(_inside, "active", False):
        return fn(*args, **kwargs)
    return _enter(fn, args, kwargs)
