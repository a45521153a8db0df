"""Event batches: the unit of work of the workflow.

A :class:`Batch` is a run of consecutive events (in event-id order); every executor processes whole
batches. Batches are cut by event count (``batch_size``) or by hits (``max_hits``), always in the
same way for the same inputs, so a resumed run finds the batches it finished before.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.events.trackml import EventRef

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Batch:
    """Consecutive events processed together by one task (fused) or one chain of tasks (staged).

    ``batch_id`` is the position of the batch in the run (0, 1, ...); ``hits`` the number of hits
    counted when batching by hits (None when batching by event count).
    """

    batch_id: int
    events: tuple[EventRef, ...]
    hits: int | None = None

    @property
    def event_ids(self) -> tuple[int, ...]:
        return tuple(ref.event_id for ref in self.events)

    @property
    def key(self) -> str:
        """A name that identifies the batch by its events (stable across runs; used in file names)."""
        ids = self.event_ids
        digest = hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:8]
        return f"batch-{ids[0]:09d}-{len(ids):04d}-{digest}"

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        ids = self.event_ids
        return f"Batch({self.batch_id}, events {ids[0]}..{ids[-1]} ({len(ids)}))"


def count_hits(ref: EventRef) -> int:
    """Number of hits of an event, counted from the lines of its hits file (no parsing).

    A file that cannot be read counts 0 hits: the problem is reported when the event is loaded,
    so one broken file never stops batching.
    """
    path = ref.paths.get("hits")
    if path is None or not path.exists():
        return 0
    opener = gzip.open if path.suffix == ".gz" else Path.open
    lines = 0
    last = b"\n"
    try:
        with opener(path, "rb") as f:
            while block := f.read(_CHUNK_BYTES):
                lines += block.count(b"\n")
                last = block[-1:]
    except (OSError, EOFError, zlib.error):
        return 0
    lines += last != b"\n"  # a last line without a newline
    return max(lines - 1, 0)  # minus the header


def make_batches(
    refs: Sequence[EventRef],
    batch_size: int | None = None,
    max_hits: int | None = None,
    hits_of: Callable[[EventRef], int] = count_hits,
) -> list[Batch]:
    """Cut events (in the order given) into batches.

    ``batch_size``: at most this many events per batch (default ``workflow.batch_size`` when
    ``max_hits`` is not given). ``max_hits``: start a new batch before the hits of a batch would
    exceed this; an event larger than ``max_hits`` is a batch of its own. Both may be given.
    """
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if max_hits is not None and max_hits < 1:
        raise ConfigError(f"--max-hits-per-batch must be at least 1, got {max_hits}")
    if batch_size is None and max_hits is None:
        batch_size = int(config.get("workflow.batch_size", 4))
    groups: list[tuple[list[EventRef], int | None]] = []
    current: list[EventRef] = []
    current_hits = 0
    for ref in refs:
        hits = hits_of(ref) if max_hits is not None else 0
        full_by_count = batch_size is not None and len(current) >= batch_size
        full_by_hits = max_hits is not None and current and current_hits + hits > max_hits
        if current and (full_by_count or full_by_hits):
            groups.append((current, current_hits if max_hits is not None else None))
            current, current_hits = [], 0
        current.append(ref)
        current_hits += hits
    if current:
        groups.append((current, current_hits if max_hits is not None else None))
    return [Batch(i, tuple(events), hits) for i, (events, hits) in enumerate(groups)]
