"""A smaller event from a bigger one: some of its hits picked at random (a lower pile-up in the
same detector), as ``trackflow bench`` and its size sweep cut events."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trackflow.events.event import Event
from trackflow.events.trackml import EventRef, write_event


def subsample_event(ref: EventRef, hits: int, rng: np.random.Generator, out_dir: Path) -> EventRef | None:
    """The event with ``hits`` of its hits picked at random (a lower pile-up), written to out_dir;
    None when it has no more than ``hits`` hits."""
    event = ref.load(("hits",))
    if event.n_hits <= hits:
        return None
    keep = np.sort(rng.choice(event.n_hits, size=hits, replace=False))
    smaller = Event(event_id=event.event_id, hits=event.hits.iloc[keep].reset_index(drop=True))
    paths = write_event(smaller, out_dir)
    return EventRef(event.event_id, paths)
