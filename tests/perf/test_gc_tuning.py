"""A server process keeps the collector off the request path: its startup heap is frozen and a large page runs
no full collection (config/gc_tuning.py)."""

from __future__ import annotations

import gc

import pytest

from config.gc_tuning import YOUNG_THRESHOLD, tune_for_serving
from tests.graphql_client import Api, gid
from tests.perf.test_query_counts import CONVERSATIONS_PAGE, add_thread, patients


class Collections:
    def __init__(self) -> None:
        self.by_generation = [0, 0, 0]

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "stop":
            self.by_generation[info["generation"]] += 1


@pytest.fixture
def serving_collector():
    thresholds = gc.get_threshold()
    tune_for_serving()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.django_db
def test_large_pages_run_no_full_collection_once_tuned_for_serving(world, serving_collector):
    # Given a process tuned as config/asgi.py tunes a server, and a 50-conversation page with every field
    assert gc.get_freeze_count() > 10_000  # the startup heap: modules, the schema, Django
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    for patient in patients(world, 49):
        add_thread(world.billing, patient, 3, world.subscriber)
    api = Api.as_user(world.subscriber)
    variables = {"m": gid("Mailbox", world.billing.pk)}
    api.data(CONVERSATIONS_PAGE, variables)
    # When it is requested 20 times
    collections = Collections()
    gc.callbacks.append(collections)
    try:
        for _ in range(20):
            api.data(CONVERSATIONS_PAGE, variables)
    finally:
        gc.callbacks.remove(collections)
    # Then no request ran a full collection, and a request ran about one young collection (20 with the defaults)
    young, middle, full = collections.by_generation
    assert full == 0, collections.by_generation
    assert young + middle <= 40, collections.by_generation
