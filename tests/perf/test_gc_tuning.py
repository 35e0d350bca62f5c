"""A server process keeps the collector off the request path: its startup heap is frozen and a large page runs
no full collection (config/gc_tuning.py)."""

from __future__ import annotations

import gc

import pytest

from config.gc_tuning import YOUNG_THRESHOLD, collect_young_if_due, tune_for_serving
from core.models import Conversation, Mailbox, Message, Patient, User
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


def test_a_young_collection_due_soon_runs_between_events_and_the_older_generations_keep_their_schedule():
    # Given a collector whose young generation collects after 4,000 new objects (the next collection far off)
    thresholds = gc.get_threshold()
    gc.set_threshold(4_000, 10, 10)
    kept: list[list[dict]] = []
    try:
        gc.collect()
        # When asked between events with less than half of the threshold allocated, then nothing is collected
        kept.append([{} for _ in range(1_000)])
        assert collect_young_if_due() is None
        assert gc.get_count()[0] >= 1_000
        # When more than half is allocated, then the young generation is collected now
        kept.append([{} for _ in range(1_500)])
        assert collect_young_if_due() == 0
        assert gc.get_count()[0] < 100
        # And once as many young collections ran as the middle generation's threshold, the middle one is collected
        # as the collector would have: after ten young collections, the eleventh asked for is a middle one
        generations = []
        for _ in range(11):
            kept.append([{} for _ in range(2_500)])
            generations.append(collect_young_if_due())
        assert generations == [0] * 10 + [1]
        assert gc.get_count()[1] == 0
    finally:
        gc.set_threshold(*thresholds)


@pytest.mark.django_db
def test_a_request_s_rows_are_freed_when_it_ends_not_by_the_collector(world, cyclic_garbage):
    # Given a 50-conversation page with every field, requested once
    for patient in patients(world, 49):
        add_thread(world.billing, patient, 3, world.subscriber)
    api = Api.as_user(world.subscriber)
    variables = {"m": gid("Mailbox", world.billing.pk)}
    api.data(CONVERSATIONS_PAGE, variables)
    cyclic_garbage()
    # When it is requested again
    page = api.data(CONVERSATIONS_PAGE, variables)
    # Then none of the rows it listed was left for the collector (the executor and Django's request are cycles:
    # rows the request still held when it ended would be unreachable garbage here, freed only by a collection;
    # the viewer's own account and membership rows are the request's, a few whatever the page)
    assert len(page["mailbox"]["conversations"]["edges"]) == 50
    listed = (Conversation, Message, Patient, Mailbox, User)
    left = [row for row in cyclic_garbage() if isinstance(row, listed) and row.pk != world.subscriber.pk]
    assert not left, sorted({type(row).__name__ for row in left})
