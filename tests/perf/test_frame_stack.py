"""GraphQL execution does not thrash the interpreter's frame data-stack chunks (CPython gh-142183).

On CPython 3.11 a call that starts near the end of a 16 KiB data-stack chunk maps a new chunk for every frame that
crosses the boundary and unmaps it on return: thousands of minor page faults per request, at some entry depths and
not others. These tests count the faults of the calling thread (`RUSAGE_THREAD`) for requests started at many
depths, so whichever depth is unlucky on this interpreter is among them.
"""

from __future__ import annotations

import gc
import resource
from collections.abc import Callable

import pytest

from graph.frame_stack import NEEDED, run_on_fresh_stack
from tests.graphql_client import Api, gid
from tests.perf.test_query_counts import CONVERSATIONS_PAGE, add_thread, patients

pytestmark = pytest.mark.skipif(not hasattr(resource, "RUSAGE_THREAD"), reason="needs getrusage(RUSAGE_THREAD)")

# Extra frames under the call: more than one 16 KiB chunk's worth of small frames, in steps finer than a field's.
DEPTHS = range(0, 240, 4)
# Faults of one steady request: the pages of its own chunk and what the heap grows by (measured: 4-40 with the
# workaround; 400-7,800 without it at unlucky depths).
MAX_FAULTS = 100


def at_depth(depth: int, fn: Callable[[], object]) -> object:
    return fn() if depth <= 0 else at_depth(depth - 1, fn)


def faults_of(fn: Callable[[], object], depth: int) -> int:
    """Minor page faults of this thread during `fn()` called `depth` frames deeper, the collector held off (its
    timing would move memory between requests); the garbage of earlier calls collected first."""
    gc.collect()
    gc.disable()
    try:
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        at_depth(depth, fn)
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
    finally:
        gc.enable()


def worst_depths(fn: Callable[[], object]) -> list[tuple[int, int]]:
    for depth in DEPTHS[:3]:
        at_depth(depth, fn)  # warm: caches, the first allocations of every size
    measured = [(depth, faults_of(fn, depth)) for depth in DEPTHS]
    return sorted(measured, key=lambda pair: -pair[1])[:5]


def recursion_across_chunk_boundaries() -> None:
    """What graphql-core's executor does per field: descend some frames, return, descend again."""

    def descend(n: int) -> int:
        return 0 if n == 0 else descend(n - 1) + 1

    for _ in range(300):
        descend(40)


@pytest.mark.skipif(not NEEDED, reason="this interpreter keeps a spare data-stack chunk (gh-142183 fixed)")
def test_the_recursion_pattern_thrashes_chunks_at_some_depth_without_the_workaround():
    # Given a recursion that goes up and down across what a 16 KiB chunk holds
    # When it is called directly at every depth
    worst = worst_depths(recursion_across_chunk_boundaries)
    # Then some depth maps and unmaps a chunk per descent (the measurement sees the bug this module works around)
    assert worst[0][1] > 5 * MAX_FAULTS, f"no thrash measured: {worst}"


def test_a_call_on_a_fresh_stack_does_not_thrash_at_any_depth():
    # Given the same recursion
    # When it runs on a fresh data-stack chunk, from every depth
    worst = worst_depths(lambda: run_on_fresh_stack(recursion_across_chunk_boundaries))
    # Then no depth faults more than a few pages
    assert worst[0][1] <= MAX_FAULTS, f"(depth, faults) of the worst depths: {worst}"


def test_nested_fresh_stack_calls_run_directly():
    # Given a call on a fresh stack
    # When it asks for a fresh stack again
    answer = run_on_fresh_stack(lambda: run_on_fresh_stack(lambda x: x * 2, 21))
    # Then the inner call runs as a plain call in the outer chunk, and exceptions come through unchanged
    assert answer == 42
    with pytest.raises(ZeroDivisionError):
        run_on_fresh_stack(lambda: 1 / 0)


@pytest.mark.django_db
def test_a_large_page_over_http_faults_a_few_pages_at_any_entry_depth(world):
    # Given a 50-conversation page with every field (about 2,300 resolved fields)
    for patient in patients(world, 49):
        add_thread(world.billing, patient, 3, world.subscriber)
    api = Api.as_user(world.subscriber)
    variables = {"m": gid("Mailbox", world.billing.pk)}
    assert len(api.data(CONVERSATIONS_PAGE, variables)["mailbox"]["conversations"]["edges"]) == 50

    # When it is requested through the view, the test client called at every depth
    worst = worst_depths(lambda: api.data(CONVERSATIONS_PAGE, variables))

    # Then no request faults more than a few pages (no chunk mapped and unmapped per field)
    assert worst[0][1] <= MAX_FAULTS, f"(depth, faults) of the worst depths: {worst}"
