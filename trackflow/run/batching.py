"""Event batches: the unit of work of the workflow.

A :class:`Batch` is a run of consecutive events (in event-id order); every executor processes whole
batches. Batches are cut by event count (``batch_size``), by hits (``max_hits``) or from the events' sizes
(``batch_size="auto"``, :class:`AutoBatching`, balanced over the run's worker slots), always in the
same way for the same inputs (and, for ``auto``, the same number of slots), so a resumed run finds the
batches it finished before; one resumed on another number of slots runs again the events of the
batches it no longer cuts alike.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.events.trackml import EventRef

_CHUNK_BYTES = 1 << 20

#: ``batch_size`` value that sizes batches from the events' hits (:class:`AutoBatching`)
AUTO = "auto"


@dataclass(frozen=True)
class AutoBatching:
    """Batch sizes chosen from the events' sizes, so Dask's fixed cost per batch (about 30 ms:
    scheduling, result transfer, the Parquet hand-off; ``trackflow bench``) stays near 1 % of
    the batch's time on small events as on full ones, and the last batches of a run end together.

    A batch holds at most ``hits_per_batch`` hits (200k: ~5 s on one core for 1.3k-hit events,
    ~20 s for two full 100k-hit events; an event bigger than that is a batch of its own) and at
    most ``max_events`` events. Within those limits a run is cut into as few batches as it can
    be, but never fewer than ``min_batches`` (events permitting), and into a multiple of the
    run's worker ``slots`` (workers × threads), the events shared out as evenly by hits as their
    order allows (:func:`balanced_groups`): every slot then gets as much work as the others, and
    no batch runs alone at the end while the other slots idle. Defaults: ``workflow.auto_batch``
    in trackflow.yaml.
    """

    hits_per_batch: int = field(default_factory=config.default("workflow.auto_batch.hits_per_batch"))
    max_events: int = field(default_factory=config.default("workflow.auto_batch.max_events"))
    min_batches: int = field(default_factory=config.default("workflow.auto_batch.min_batches"))

    def __post_init__(self) -> None:
        for name in ("hits_per_batch", "max_events", "min_batches"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"workflow.auto_batch.{name}: must be >= 1, got {getattr(self, name)}")

    def sizes(self, hits: Sequence[int], slots: int = 1) -> list[int]:
        """Events per batch, in order, for events of these sizes (hits each) on ``slots`` worker
        slots: ``sum(sizes) == len(hits)``, each batch within the limits, the batch count a
        multiple of ``slots`` (or one batch per event when there are fewer events than that)."""
        if slots < 1:
            raise ConfigError(f"slots: must be >= 1, got {slots}")
        n = len(hits)
        if n == 0:
            return []
        # an unreadable file counts 0 hits (count_hits) yet is still an event to hand out
        weights = [max(int(h), 1) for h in hits]
        fewest = max(
            -(-sum(weights) // int(self.hits_per_batch)),
            -(-n // int(self.max_events)),
            min(int(self.min_batches), n),
        )
        count = min(n, -(-fewest // slots) * slots)
        while True:
            groups = balanced_groups(weights, count)
            if count == n or all(self._fits(weights, start, size) for start, size in _spans(groups)):
                return groups
            count = min(n, count + slots)  # uneven events: one more batch per slot, still balanced

    def _fits(self, weights: Sequence[int], start: int, size: int) -> bool:
        if size == 1:
            return True  # an event bigger than the budget is a batch of its own
        return size <= self.max_events and sum(weights[start : start + size]) <= self.hits_per_batch


def balanced_groups(weights: Sequence[int], count: int) -> list[int]:
    """Cut ``len(weights)`` items, in order, into exactly ``count`` non-empty runs whose weights
    are as even as the order allows; returns the runs' lengths.

    Item k goes to run ``floor(count × (W_k − w_k / 2) / W)`` (``W_k`` the weight up to and
    including k, ``W`` the total: its midpoint's share of the total), nudged so that no run is
    skipped and every run gets an item; with equal weights the lengths differ by at most one.
    ``1 <= count <= len(weights)``; weights > 0.
    """
    n = len(weights)
    if not 1 <= count <= n:
        raise ValueError(f"count {count}: need 1 <= count <= {n} items")
    total = sum(weights)
    lengths = [0] * count
    run, cumulative = 0, 0
    for k, weight in enumerate(weights):
        midpoint = 2 * cumulative + weight  # twice the item's midpoint: integer arithmetic
        cumulative += weight
        share = (count * midpoint) // (2 * total)
        # the first item opens run 0; a run is never skipped (at most one step up per item), and
        # enough runs are opened that the items left can fill the ones still to come
        run = 0 if k == 0 else max(min(max(share, run), run + 1), count - (n - k))
        lengths[run] += 1
    return lengths


def _spans(lengths: Sequence[int]) -> list[tuple[int, int]]:
    """(start, length) of consecutive runs of these lengths."""
    spans: list[tuple[int, int]] = []
    start = 0
    for length in lengths:
        spans.append((start, length))
        start += length
    return spans


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
    slots: int = 1,
) -> list[Batch]:
    """Cut events (in the order given) into batches.

    ``batch_size``: at most this many events per batch (default ``workflow.batch_size`` when
    ``max_hits`` is not given). ``max_hits``: start a new batch before the hits of a batch would
    exceed this; an event larger than ``max_hits`` is a batch of its own. Both may be given.
    ``batch_size="auto"``: sizes chosen from the events' hits (:class:`AutoBatching`, within
    ``max_hits`` when given too), the batch count a multiple of ``slots`` (the worker slots the
    run will have: workers × threads per worker), so the last batches end together.
    """
    if batch_size is None and max_hits is None:
        batch_size = config.get("workflow.batch_size")
    if batch_size == AUTO:
        auto = AutoBatching()
        if max_hits is not None:
            auto = replace(auto, hits_per_batch=min(int(max_hits), auto.hits_per_batch))
        sizes = [hits_of(ref) for ref in refs]
        return [
            Batch(i, tuple(refs[start : start + length]), sum(sizes[start : start + length]))
            for i, (start, length) in enumerate(_spans(auto.sizes(sizes, slots)))
        ]
    if isinstance(batch_size, str):
        if not batch_size.isdigit():
            raise ConfigError(f"batch_size: a number of events or 'auto', got {batch_size!r}")
        batch_size = int(batch_size)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
    if max_hits is not None and max_hits < 1:
        raise ConfigError(f"max_hits: must be >= 1, got {max_hits}")
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
