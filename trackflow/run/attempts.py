"""One batch's attempts made into one result: a batch whose event failed transiently is run
again without it, a batch that killed its workers runs its events one by one, and the parts come
back together here, in event order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from trackflow.run.batching import Batch
from trackflow.run.records import BatchResult, EventFailure, empty_tracks

__all__ = ["merge_attempts", "without_event"]


def merge_attempts(
    batch: Batch, parts: Sequence[BatchResult], failures: Sequence[EventFailure]
) -> BatchResult:
    """One result for ``batch`` from the results of its (sub-)batches and the failures found
    between them; rows and records in event order."""
    order = {event_id: i for i, event_id in enumerate(batch.event_ids)}
    frames = [p.tracks for p in parts if len(p.tracks)]
    tracks = pd.concat(frames, ignore_index=True) if frames else empty_tracks()
    if len(parts) > 1:
        # sub-batches keep event order inside; a stable sort by position restores the batch order
        position = tracks["event_id"].map(order)
        tracks = tracks.iloc[position.argsort(kind="stable")].reset_index(drop=True)
    all_failures = sorted(
        [*failures, *(f for p in parts for f in p.failures)], key=lambda f: order[f.event_id]
    )
    return BatchResult(
        batch=batch,
        tracks=tracks,
        events=sorted((e for p in parts for e in p.events), key=lambda e: order[e.event_id]),
        failures=all_failures,
        tasks=[t for p in parts for t in p.tasks],
    )


def without_event(batch: Batch, event_id: int) -> Batch:
    """``batch`` less the event ``event_id``."""
    return replace(batch, events=tuple(ref for ref in batch.events if ref.event_id != event_id))
