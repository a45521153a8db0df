"""Automatic batch sizes (``batch_size="auto"``, issue 30): within the hit budget, as few batches
as the budget allows, their count a multiple of the worker slots, the events shared out evenly, so
the last batches of a run end together instead of one running alone.

Pure functions of the events' sizes: no files, no Dask.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.events.trackml import EventRef
from trackflow.run.batching import AutoBatching, balanced_groups, make_batches

SIZES = st.lists(st.integers(min_value=0, max_value=300_000), min_size=1, max_size=300)


def finish_times(batch_hits: Sequence[int], slots: int) -> list[float]:
    """When each slot finishes, batches taken in order by the first free slot (as Dask hands
    out the batches a run submits), a batch taking as long as its hits."""
    free = [0.0] * slots
    for hits in batch_hits:
        heapq.heappush(free, heapq.heappop(free) + hits)
    return sorted(free)


def spans(lengths: Sequence[int]) -> list[slice]:
    out, start = [], 0
    for length in lengths:
        out.append(slice(start, start + length))
        start += length
    return out


# --------------------------------------------------------------------------- balanced_groups
@settings(max_examples=300, deadline=None)
@given(weights=st.lists(st.integers(1, 1_000), min_size=1, max_size=200), data=st.data())
def test_balanced_groups_cut_every_item_once_into_exactly_count_runs(weights: list[int], data) -> None:
    count = data.draw(st.integers(1, len(weights)))
    lengths = balanced_groups(weights, count)
    assert len(lengths) == count
    assert sum(lengths) == len(weights)
    assert min(lengths) >= 1
    # no run is heavier than an even share plus the heaviest item (the cut is at the midpoints)
    total = sum(weights)
    for part in spans(lengths):
        assert sum(weights[part]) <= total / count + max(weights)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 500), weight=st.integers(1, 10_000), data=st.data())
def test_equal_items_make_runs_whose_lengths_differ_by_at_most_one(n: int, weight: int, data) -> None:
    count = data.draw(st.integers(1, n))
    lengths = balanced_groups([weight] * n, count)
    assert max(lengths) - min(lengths) <= 1


def test_balanced_groups_refuses_a_count_it_cannot_cut() -> None:
    with pytest.raises(ValueError, match="count 4"):
        balanced_groups([1, 1, 1], 4)
    with pytest.raises(ValueError, match="count 0"):
        balanced_groups([1, 1, 1], 0)


# --------------------------------------------------------------------------- AutoBatching.sizes
@settings(max_examples=300, deadline=None)
@given(
    hits=SIZES,
    slots=st.integers(1, 16),
    budget=st.integers(1_000, 400_000),
    max_events=st.integers(1, 300),
    min_batches=st.integers(1, 8),
)
def test_auto_sizes_stay_within_the_budget_and_come_in_multiples_of_the_slots(
    hits: list[int], slots: int, budget: int, max_events: int, min_batches: int
) -> None:
    auto = AutoBatching(hits_per_batch=budget, max_events=max_events, min_batches=min_batches)
    sizes = auto.sizes(hits, slots)
    assert sum(sizes) == len(hits) and min(sizes) >= 1
    # a multiple of the slots, or every event its own batch when there are too few events
    assert len(sizes) % slots == 0 or len(sizes) == len(hits)
    assert len(sizes) >= min(min_batches, len(hits))
    for part in spans(sizes):
        batch = hits[part]
        # never above the hit budget or the event cap (an event over the budget goes alone)
        assert len(batch) == 1 or (len(batch) <= max_events and sum(max(h, 1) for h in batch) <= budget)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 3_000),
    hits=st.integers(1, 120_000),
    slots=st.integers(1, 16),
    budget=st.integers(10_000, 400_000),
)
def test_equal_events_take_the_fewest_batches_the_budget_allows_and_end_together(
    n: int, hits: int, slots: int, budget: int
) -> None:
    auto = AutoBatching(hits_per_batch=budget, max_events=256, min_batches=1)
    sizes = auto.sizes([hits] * n, slots)
    per_batch = max(budget // hits, 1)  # events the budget lets one batch hold
    fewest = -(-n // min(per_batch, 256))
    # the fewest batches the limits allow, rounded up to a multiple of the slots
    assert len(sizes) == min(n, -(-fewest // slots) * slots)
    assert max(sizes) - min(sizes) <= 1
    # every slot gets as many batches as the others, each within one event of the others: the
    # slots finish within one event per batch of each other, where cutting by the budget alone
    # left the last, short batch running alone
    finish = finish_times([s * hits for s in sizes], slots)
    if len(sizes) >= slots:
        assert finish[-1] - finish[0] <= (len(sizes) // slots) * hits


def test_a_short_run_no_longer_ends_with_one_batch_running_alone() -> None:
    """The issue's case: 1,000 events of the study's size on 2 workers. Cut by the budget alone
    (153 events a batch) the run was 7 batches, the 7th running on one worker while the other
    idled; balanced, it is 8 batches of 125 and both workers finish together."""
    auto = AutoBatching(hits_per_batch=200_000, max_events=256, min_batches=4)
    sizes = auto.sizes([1_300] * 1_000, slots=2)
    assert sizes == [125] * 8
    finish = finish_times([s * 1_300 for s in sizes], 2)
    assert finish[0] == finish[1]
    # one slot: the fewest batches the budget allows (7), as even as they can be
    assert sorted(auto.sizes([1_300] * 1_000, slots=1)) == [142] + [143] * 6


def test_few_events_spread_over_every_slot() -> None:
    auto = AutoBatching(hits_per_batch=200_000, max_events=256, min_batches=1)
    assert auto.sizes([1_450] * 16, slots=1) == [16]
    assert auto.sizes([1_450] * 16, slots=2) == [8, 8]
    assert auto.sizes([1_450] * 16, slots=3) == [5, 6, 5]
    assert auto.sizes([1_450] * 3, slots=4) == [1, 1, 1]  # fewer events than slots
    assert auto.sizes([], slots=2) == []


def test_uneven_events_get_more_batches_until_each_fits() -> None:
    """Two full events and many small ones: the midpoint cut would put a full event with small
    ones over the budget; one more batch per slot until every batch fits."""
    hits = [150_000, 150_000] + [1_000] * 40
    sizes = AutoBatching(hits_per_batch=200_000, max_events=256, min_batches=1).sizes(hits, 2)
    assert len(sizes) % 2 == 0
    for part in spans(sizes):
        assert len(hits[part]) == 1 or sum(hits[part]) <= 200_000


def test_auto_batching_defaults_come_from_the_yaml_and_bad_values_are_refused() -> None:
    with config.set(**{"workflow.auto_batch.hits_per_batch": 5_000, "workflow.auto_batch.min_batches": 2}):
        auto = AutoBatching()
    assert auto.hits_per_batch == 5_000 and auto.min_batches == 2
    assert auto.max_events == config.get("workflow.auto_batch.max_events")
    with pytest.raises(ConfigError, match=r"auto_batch\.max_events"):
        AutoBatching(max_events=0)
    with pytest.raises(ConfigError, match="slots"):
        AutoBatching().sizes([1_000], slots=0)


# --------------------------------------------------------------------------- make_batches
def test_make_batches_auto_balances_over_the_slots_and_keeps_event_order() -> None:
    refs = [EventRef(i, {}) for i in range(1_000)]
    with config.set(**{"workflow.auto_batch.min_batches": 4}):
        batches = make_batches(refs, batch_size="auto", hits_of=lambda ref: 1_300, slots=2)
    assert [len(b) for b in batches] == [125] * 8
    assert [b.batch_id for b in batches] == list(range(8))
    assert [e for b in batches for e in b.event_ids] == list(range(1_000))
    assert all(b.hits == 125 * 1_300 for b in batches)
    # max_hits with auto: the tighter of the two budgets
    tight = make_batches(refs, batch_size="auto", max_hits=13_000, hits_of=lambda ref: 1_300, slots=2)
    assert {len(b) for b in tight} == {10} and len(tight) == 100


def test_make_batches_with_a_fixed_size_ignores_the_slots() -> None:
    refs = [EventRef(i, {}) for i in range(10)]
    assert [len(b) for b in make_batches(refs, batch_size=4, slots=3)] == [4, 4, 2]
