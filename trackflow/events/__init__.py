"""Events: TrackML files in and out, validation, simulation. Knows nothing of models or Dask."""

from __future__ import annotations

from trackflow.events.event import VOLUME_IDS, Event, with_derived
from trackflow.events.submission import read_submission, write_submission
from trackflow.events.trackml import EventRef, iter_events, list_events, read_event, write_event

__all__ = [
    "VOLUME_IDS",
    "Event",
    "EventRef",
    "iter_events",
    "list_events",
    "read_event",
    "read_submission",
    "with_derived",
    "write_event",
    "write_submission",
]
