"""What is in an event or a directory of events (``trackflow inspect``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from trackflow.errors import EventFileError
from trackflow.events.event import Event
from trackflow.events.trackml import list_events

#: parts read by :func:`summarize_events`; cells are not needed for a summary
SUMMARY_PARTS = ("hits", "truth", "particles")


def summarize_event(event: Event) -> dict[str, Any]:
    """JSON-ready summary of one event.

    Keys: event_id, hits, particles (rows of the particles file, None without it), noise_fraction
    (from the truth when present, else 1 - sum(particles.nhits) / hits, None without either),
    noise_from ("truth" | "particles.nhits" | None), has_truth, hits_per_volume ({volume_id: hits};
    JSON turns the keys into strings), source (the hits file).
    """
    noise = event.noise_fraction()
    if event.truth is not None:
        noise_from = "truth"
    elif noise is not None:
        noise_from = "particles.nhits"
    else:
        noise_from = None
    return {
        "event_id": int(event.event_id),
        "hits": int(event.n_hits),
        "particles": None if event.particles is None else len(event.particles),
        "noise_fraction": None if noise is None else round(float(noise), 6),
        "noise_from": noise_from,
        "has_truth": event.has_truth,
        "hits_per_volume": event.hits_per_volume(),
        "source": None if event.source is None else str(event.source),
    }


def summarize_events(
    events_dir: str | Path,
    event_ids: Iterable[int] | None = None,
    errors: Literal["raise", "report"] = "raise",
) -> list[dict[str, Any]]:
    """Summaries (:func:`summarize_event`) of the events in ``events_dir``, by event id.

    Events are read one at a time, so memory stays that of one event. ``event_ids``: only these
    (EventFileError if one has no files). ``errors="raise"``: the first bad event raises
    EventFileError naming the file and the problem; ``"report"``: a bad event gives
    ``{"event_id": ..., "error": "<file>: <problem>"}`` and the others are still summarised.
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', not {errors!r}")
    summaries: list[dict[str, Any]] = []
    for ref in list_events(events_dir, event_ids):
        try:
            event = ref.load(SUMMARY_PARTS)
        except EventFileError as error:
            if errors == "raise":
                raise
            summaries.append({"event_id": ref.event_id, "error": str(error)})
            continue
        summaries.append(summarize_event(event))
    return summaries
