"""The operator's garbage-collection policy: survivors of a full collection frozen, thawed now and then."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from modelrollout.operator_metrics import OperatorMetrics
from modelrollout.runtime.gc_policy import FreezeSurvivors


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> Iterator[FreezeSurvivors]:
    gc.collect()
    gc.unfreeze()
    installed = FreezeSurvivors(thaw_seconds=3600, growth=1.25, count_seconds=60, clock=clock)
    installed.install()
    yield installed
    installed.uninstall()
    assert gc.get_freeze_count() == 0


def test_a_full_collection_freezes_what_survived_it(policy: FreezeSurvivors) -> None:
    kept = [Node() for _ in range(1000)]
    gc.collect()
    frozen = gc.get_freeze_count()
    assert frozen >= len(kept)
    created_after = [Node() for _ in range(1000)]
    gc.collect(0)
    gc.collect(1)
    # Frozen objects may die meanwhile (reference counting still frees them), so the count may
    # fall; what a young collection leaves must still be in a generation, not frozen.
    assert gc.get_freeze_count() <= frozen, "only a full collection freezes"
    in_generations = {id(obj) for obj in gc.get_objects()}
    assert all(id(node) in in_generations for node in created_after)
    assert not any(id(node) in in_generations for node in kept)


def test_a_later_full_collection_walks_only_new_objects(policy: FreezeSurvivors) -> None:
    held = [[Node() for _ in range(10)] for _ in range(20_000)]
    gc.collect()
    assert gc.get_freeze_count() >= 200_000
    # What a collection walks is what it tracks: the frozen objects are outside every generation.
    assert sum(len(gc.get_objects(generation)) for generation in range(3)) < 10_000
    assert len(held) == 20_000


def test_a_garbage_cycle_through_frozen_objects_is_collected_at_the_hourly_thaw(
    policy: FreezeSurvivors, clock: FakeClock
) -> None:
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    gone = weakref.ref(first)
    gc.collect()  # both survive (we hold them) and are frozen
    del first, second
    gc.collect()
    assert gone() is not None, "a frozen cycle waits for the thaw"
    clock.now += 3599
    gc.collect()
    assert gone() is not None
    clock.now += 1
    gc.collect()
    assert gone() is None, "the full collection after thaw_seconds sees the whole heap"
    assert policy.thaws == 1
    assert gc.get_freeze_count() > 0, "and freezes its survivors again"


def test_frozen_objects_grown_by_a_quarter_thaw_at_the_next_count(policy: FreezeSurvivors, clock: FakeClock) -> None:
    gc.collect()
    baseline = policy.frozen_after_thaw
    assert baseline is not None and baseline > 0
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    gone = weakref.ref(first)
    kept = [Node() for _ in range(int(baseline * 0.2))]
    gc.collect()
    del first, second
    clock.now += 60
    gc.collect()
    assert gone() is not None and policy.thaws == 0, "grown by a fifth: no thaw yet"
    kept += [Node() for _ in range(int(baseline * 0.1))]
    gc.collect()
    clock.now += 59
    gc.collect()
    assert policy.thaws == 0, "the frozen objects are counted at most once a minute"
    clock.now += 1
    gc.collect()
    assert policy.thaws == 1
    assert gone() is None
    # The new base is what the thawed collection froze, growth included. Not an exact sum: frozen
    # objects of the test process may die by reference counting meanwhile (44 did once in CI).
    assert policy.frozen_after_thaw is not None and policy.frozen_after_thaw > policy.growth * baseline
    in_generations = {id(obj) for obj in gc.get_objects()}
    assert not any(id(node) in in_generations for node in kept), "what survived the thaw is frozen again"


def test_young_collections_wait_for_more_new_objects(policy: FreezeSurvivors) -> None:
    assert gc.get_threshold()[0] == 10_000


def test_uninstalled_the_collector_is_back_to_its_default(clock: FakeClock) -> None:
    before = gc.get_threshold()
    installed = FreezeSurvivors(clock=clock)
    installed.install()
    installed.install()
    assert gc.callbacks.count(installed._on_gc) == 1
    gc.collect()
    installed.uninstall()
    assert gc.get_freeze_count() == 0
    assert installed._on_gc not in gc.callbacks
    assert gc.get_threshold() == before


def test_the_operator_metrics_time_each_collection_by_generation() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.watch_gc()
    gc.disable()  # only the collections below
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        gc.enable()
        gc.callbacks.remove(metrics._on_gc)
    counted = {
        sample.labels["generation"]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "modelrollout_gc_pause_seconds_count"
    }
    assert counted == {"0": 1, "2": 2}
