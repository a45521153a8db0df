"""Event batches: the unit of work of the workflow.

A :class:`Batch` is a run of consecutive events (in event-id order); every executor processes whole
batches. Batches are cut by event count (``batch_size``), by hits (``max_hits``) or from the events' sizes
(``batch_size="auto"``, :class:`AutoBatching`), always in the same way for the same inputs, so a
resumed run finds the batches it finished before.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.events.trackml import EventRef

_CHUNK_BYTES = 1 << 20

#: ``batch_size`` value that sizes batches from the events' hits (:class:`AutoBatching`)
AUTO = "auto"


def _auto(key: str, default: int) -> int:
    return int(config.get(f"workflow.auto_batch.{key}", default))


@dataclass(frozen=True)
class AutoBatching:
    """Batch sizes chosen from the events' sizes, so Dask's fixed cost per batch (about 30 ms:
    scheduling, result transfer, the Parquet hand-off; ``trackflow bench``) stays near 1 % of
    the batch's time on small events as on full ones.

    Events are grouped until a batch holds ``hits_per_batch`` hits (200k: ~5 s on one core for
    1.3k-hit events, ~20 s for two full 100k-hit events), at most ``max_events`` events, and
    never into fewer than ``min_batches`` batches when there are that many events, so every
    worker of a small cluster still gets work. Defaults: ``workflow.auto_batch`` in trackflow.yaml.
    """

    hits_per_batch: int = field(default_factory=lambda: _auto("hits_per_batch", 200_000))
    max_events: int = field(default_factory=lambda: _auto("max_events", 256))
    min_batches: int = field(default_factory=lambda: _auto("min_batches", 4))

    def __post_init__(self) -> None:
        for name in ("hits_per_batch", "max_events", "min_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"workflow.auto_batch.{name}: must be >= 1, got {getattr(self, name)}")

    def limits(self, hits: Sequence[int]) -> tuple[int, int]:
        """(events, hits) per batch for events of these sizes, as :func:`make_batches` takes them."""
        spread = -(-sum(hits) // min(self.min_batches, max(len(hits), 1)))  # ceil: >= min_batches
        return self.max_events, max(1, min(self.hits_per_batch, spread))


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
    batch_size: int | str | None = None,
    max_hits: int | None = None,
    hits_of: Callable[[EventRef], int] = count_hits,
) -> list[Batch]:
    """Cut events (in the order given) into batches.

    ``batch_size``: at most this many events per batch (default ``workflow.batch_size`` when
    ``max_hits`` is not given). ``max_hits``: start a new batch before the hits of a batch would
    exceed this; an event larger than ``max_hits`` is a batch of its own. Both may be given.
    ``batch_size="auto"``: both chosen from the events' hits (:class:`AutoBatching`).
    """
    if batch_size is None and max_hits is None:
        batch_size = config.get("workflow.batch_size", 4)
    if batch_size == AUTO:
        sizes = {ref.event_id: hits_of(ref) for ref in refs}
        batch_size, auto_hits = AutoBatching().limits(list(sizes.values()))
        max_hits = auto_hits if max_hits is None else min(max_hits, auto_hits)
        return make_batches(refs, batch_size, max_hits, lambda ref: sizes[ref.event_id])
    if isinstance(batch_size, str):
        if not batch_size.isdigit():
            raise ConfigError(f"--batch-size must be a number of events or 'auto', got {batch_size!r}")
        batch_size = int(batch_size)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if max_hits is not None and max_hits < 1:
        raise ConfigError(f"--max-hits-per-batch must be at least 1, got {max_hits}")
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
