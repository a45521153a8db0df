"""The batches a ``trackflow bench`` point runs (:class:`PointBatches`) and the warm-up before
its first timed point (:func:`warm_up`).

A point holds at least ``bench.min_point_s`` of one-core work: 16 small events are ~0.7 s, ~0.35 s
on 2 workers, where one batch's ragged end and the machine's drift move a throughput by 10 %, so
the events are replayed, in order, whole times over (``replays``) until their time per event (the
first warm-up's median) adds up to it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import replace

from trackflow.events.trackml import EventRef
from trackflow.run.batching import AUTO, Batch, count_hits, make_batches
from trackflow.run.executors import DaskExecutor, Executor
from trackflow.run.records import BatchResult

__all__ = ["PointBatches", "warm_up"]


def warm_up(executor: Executor, batches: list[Batch], slots: int) -> list[BatchResult]:
    """Two untimed batches per worker slot, ``slots`` in flight: every worker's first inference,
    allocator and caches before timing. One batch warmed one worker only, and the first two
    events of a cold worker take 3-4x a warm one's (0.25-0.30 s vs 0.07 s on 1.4k-hit events):
    three such samples of sixteen raised a 2-worker bench's mean service time by half, and the
    estimate built on it predicted 2.7x the p95 latency the warmed-up service then had."""
    # own batch ids: a task's key holds its batch id, and repeated keys would be one task
    warm = (
        [replace(batches[i % len(batches)], batch_id=i) for i in range(2 * max(slots, 1))] if batches else []
    )
    if not isinstance(executor, DaskExecutor):  # the direct loop: one slot, nothing in flight
        return list(executor.execute(warm))
    in_flight = executor.max_in_flight
    executor.max_in_flight = max(slots, 1)
    results = list(executor.execute(warm))
    executor.max_in_flight = in_flight
    return results


class PointBatches:
    """The run's batches for a number of worker slots: the same for every slot count with a
    fixed ``batch_size``; with ``"auto"``, balanced over the slots as ``trackflow reconstruct``
    would cut them on that cluster (the events' hits counted once). ``largest``: the most events
    a batch handed out so far held.

    ``replays``: how many times over the timed points run the events (in order), 1 until
    :meth:`calibrate` has seen a warm-up: enough for ``min_point_s`` of one-core work, and once
    replayed a multiple of ``slots`` (the most worker slots of the sweep), so that auto batches
    give every slot whole copies, the same events: balanced by hits alone, the two halves of 16
    events replayed 7 times took 2.04 and 2.41 s on 2 workers (some events cost more per hit),
    and the first worker then idled for the rest of the point."""

    def __init__(
        self, refs: Sequence[EventRef], batch_size: int | str, min_point_s: float, slots: int = 1
    ) -> None:
        self.refs = list(refs)
        self.batch_size = batch_size
        self.hits = {ref.event_id: count_hits(ref) for ref in refs} if batch_size == AUTO else {}
        self.largest = 0
        self.min_point_s = min_point_s
        self.slots = max(int(slots), 1)
        self.replays = 1
        self.event_s: float | None = None  # the warm-up's median time per event (s), once calibrated

    def calibrate(self, warm_up: Sequence[BatchResult]) -> None:
        """Set ``replays`` from the first warm-up's per-event in-task times (their median: a
        cold worker's first events take 3-4x a warm one's); later warm-ups change nothing, so
        every point runs the same events."""
        times = [e.stop - e.start for r in warm_up for e in r.events]
        if self.event_s is not None or not times or not self.refs:
            return
        self.event_s = float(statistics.median(times))
        once = self.event_s * len(self.refs)
        replays = max(1, math.ceil(self.min_point_s / once)) if once > 0 else 1
        self.replays = replays if replays == 1 else math.ceil(replays / self.slots) * self.slots

    def __call__(self, slots: int, *, once: bool = False) -> list[Batch]:
        """The batches for ``slots`` worker slots; ``once``: each event once (a warm-up)."""
        batches = make_batches(
            self.refs * (1 if once else self.replays),
            batch_size=self.batch_size,
            hits_of=lambda ref: self.hits[ref.event_id],
            slots=slots,
        )
        self.largest = max([self.largest, *(len(b) for b in batches)])
        return batches
