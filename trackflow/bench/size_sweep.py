"""The size sweep of ``trackflow bench``: seconds, per-stage seconds, counts and working memory
of one event against its number of hits, on events subsampled to each size (random hits, i.e. a
lower pile-up in the same detector). Direct executor, one thread, in the calling process."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trackflow import config
from trackflow.estimation.size_model import MemoryScaling
from trackflow.events.subsample import subsample_event
from trackflow.events.trackml import EventRef
from trackflow.memory import PeakMemory, rss_bytes
from trackflow.run.batching import Batch
from trackflow.run.executors import make_executor
from trackflow.run.plugin import PipelineLoader, load_pipeline


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
    time_limit = float(config.get("bench.size_time_limit"))
    executor = make_executor("direct", pipeline=load_pipeline(models_dir, device, 1, loader), retries=0)
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="trackflow-size-") as tmp:
        smallest = min(sizes, default=0)
        # its own random stream: the timed subsamples stay the same with or without it
        warm_rng = np.random.default_rng(1)
        warm = (
            subsample_event(refs[0], smallest, warm_rng, Path(tmp) / "warm-up") if refs and smallest else None
        )
        list(executor.execute([Batch(0, (warm or refs[0],))]))
        baseline = rss_bytes()  # pipeline loaded and run once, no event held
        for hits in sorted(sizes):
            subsampled = [
                s
                for i, ref in enumerate(refs[:events_per_size])
                if (s := subsample_event(ref, hits, rng, Path(tmp) / f"h{hits}-{i}")) is not None
            ]
            if not subsampled:
                continue
            seconds = []
            for i, ref in enumerate(subsampled):
                with PeakMemory() as memory:
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
    return MemoryScaling.fit(np.asarray(hits), np.asarray(working, dtype=np.float64)).to_dict()
