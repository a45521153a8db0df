"""The size sweep of ``trackflow bench``: seconds, per-stage seconds, counts and working memory
of one event against its number of hits, on events subsampled to each size (random hits, i.e. a
lower pile-up in the same detector). Direct executor, one thread, in the calling process."""

from __future__ import annotations

import statistics
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trackflow import config
from trackflow.events.event import Event
from trackflow.events.trackml import EventRef, write_event
from trackflow.workflow.batching import Batch
from trackflow.workflow.executors import DirectExecutor
from trackflow.workflow.plugin import PipelineLoader, load_pipeline
from trackflow.workflow.size_scaling import SizeScaling


def _subsample(ref: EventRef, hits: int, rng: np.random.Generator, out_dir: Path) -> EventRef | None:
    """The event with ``hits`` of its hits picked at random (a lower pile-up), written to out_dir;
    None when it has no more than ``hits`` hits."""
    event = ref.load(("hits",))
    if event.n_hits <= hits:
        return None
    keep = np.sort(rng.choice(event.n_hits, size=hits, replace=False))
    smaller = Event(event_id=event.event_id, hits=event.hits.iloc[keep].reset_index(drop=True))
    paths = write_event(smaller, out_dir)
    return EventRef(event.event_id, paths)


class _PeakMemory:
    """Highest resident memory (bytes) of this process while the block runs, sampled every
    5 ms by a thread (torch releases the GIL in its kernels, so the samples keep coming)."""

    def __enter__(self) -> _PeakMemory:
        import psutil

        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def process_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def size_sweep(
    refs: Sequence[EventRef],
    sizes: Sequence[int],
    events_per_size: int,
    models_dir: Path | None = None,
    device: str = "cpu",
    loader: PipelineLoader | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Direct, 1 thread: per event its hits, seconds, per-stage seconds, counts (edges after
    each stage) and working memory, on the first ``events_per_size`` events subsampled to each
    size (smallest first; stops after a size whose events took more than
    ``bench.size_time_limit`` s on average, 20 s by default). One untimed warm-up event first,
    so that the first inference's one-off costs do not land on the smallest size."""
    rng = np.random.default_rng(0)
    time_limit = float(config.get("bench.size_time_limit", 20.0))
    executor = DirectExecutor(load_pipeline(models_dir, device, 1, loader), retries=0)
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="trackflow-size-") as tmp:
        smallest = min(sizes, default=0)
        # its own random stream: the timed subsamples stay the same with or without it
        warm_rng = np.random.default_rng(1)
        warm = _subsample(refs[0], smallest, warm_rng, Path(tmp) / "warm-up") if refs and smallest else None
        list(executor.execute([Batch(0, (warm or refs[0],))]))
        baseline = process_rss()  # pipeline loaded and run once, no event held
        for hits in sorted(sizes):
            subsampled = [
                s
                for i, ref in enumerate(refs[:events_per_size])
                if (s := _subsample(ref, hits, rng, Path(tmp) / f"h{hits}-{i}")) is not None
            ]
            if not subsampled:
                continue
            seconds = []
            for i, ref in enumerate(subsampled):
                with _PeakMemory() as memory:
                    (result,) = executor.execute([Batch(i, (ref,))])
                for e in result.events:
                    seconds.append(e.stop - e.start)
                    points.append(
                        {
                            "hits": e.hits,
                            "seconds": e.stop - e.start,
                            "stages": e.timings,
                            "counts": e.counts,
                            # sizes ascend: memory kept from smaller events is below this peak
                            "working_bytes": max(memory.peak - baseline, 0),
                        }
                    )
            if log is not None:
                log({"mode": "size", "hits": hits, "events": len(subsampled)})
            if seconds and statistics.fmean(seconds) > time_limit:
                break  # bigger sizes would take longer still; the fit extrapolates
    return {"points": points}


def working_memory_fit(points: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """``bytes = a + b·hits^k`` through the working memory of the sweep's events, or None."""
    measured = [(p["hits"], p["working_bytes"]) for p in points if p.get("working_bytes", 0) > 0]
    if len({h for h, _ in measured}) < 2:
        return None
    hits, working = zip(*measured, strict=True)
    return SizeScaling.fit(np.asarray(hits), np.asarray(working, dtype=np.float64)).to_dict()
