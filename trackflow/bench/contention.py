"""Node contention: how much slower one event runs when every core of the node is busy.

Cores of one node share the last-level cache, the memory bandwidth and (on most servers) a
power budget that lowers the clock when more cores run. A worker benched alone can therefore
be faster than the same worker beside others. The service times of ``trackflow bench`` come
from one worker, so the estimate needs that factor. (On the 2-core development machine, one
36 MB L3, no SMT, this probe measured x0.94-x1.17; Dask's 2 workers were slowed more, x1.1-x1.25,
because Dask's own client, scheduler and event loops then have no spare core: that part is
measured separately, as Dask's CPU per batch, see :func:`trackflow.estimation.sizing.shared_cores_service`.)

It is a property of the hardware, measured like a matmul peak, without Dask:
:func:`measure_node_contention` starts N processes (spawn; one thread each; N = the usable
cores by default), lets each load the pipeline and warm up, releases them together with a
barrier, and has each run the same events in a loop for a fixed window; then one process alone
does the same. ``slowdown`` = mean in-task time per event with N at once ÷ alone, compared
event by event (the same events in both runs).

The result is a :class:`~trackflow.estimation.contention.NodeContention` (numbers only: the
estimate reads it without Dask).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trackflow.estimation.contention import NodeContention, slowdown_from_times
from trackflow.run.batching import Batch


def _run_processes(
    batches: Sequence[Batch], processes: int, window_s: float, pipeline_args: tuple[Any, ...]
) -> dict[int, list[float]]:
    """Per-event seconds (by event id) of ``processes`` spawned processes released together."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=_worker, args=(rank, batches, window_s, pipeline_args, barrier, results), daemon=True
        )
        for rank in range(processes)
    ]
    for worker in workers:
        worker.start()
    times: dict[int, list[float]] = defaultdict(list)
    errors = []
    reported: set[int] = set()
    deadline = time.monotonic() + window_s + 600  # loading the models takes seconds, not minutes
    try:
        while len(reported) < processes:
            try:
                rank, measured, error = results.get(timeout=1.0)
            except queue.Empty:
                # a process that died before reporting (e.g. a main module without the
                # ``if __name__ == "__main__"`` guard that spawn needs) never answers
                dead = [r for r, w in enumerate(workers) if r not in reported and w.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    errors.append(f"contention process(es) {dead or 'all'} died or hung without reporting")
                    break
                continue
            reported.add(rank)
            if error:
                errors.append(f"process {rank}: {error}")
            for event_id, seconds in measured:
                times[event_id].append(seconds)
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    if errors:
        raise RuntimeError("; ".join(errors))
    return times


def _worker(
    rank: int,
    batches: Sequence[Batch],
    window_s: float,
    pipeline_args: tuple[Any, ...],
    barrier: Any,
    results: Any,
) -> None:
    """One contention process: load, warm up, wait for the others, loop over the events."""
    measured: list[tuple[int, float]] = []
    try:
        from trackflow.run.executors import make_executor
        from trackflow.run.plugin import load_pipeline

        executor = make_executor("direct", pipeline=load_pipeline(*pipeline_args), retries=0)
        list(executor.execute(batches[:1]))  # warm-up: first inference, allocator, caches
        barrier.wait(timeout=600)
        start = time.perf_counter()
        # each process starts at a different event so that the processes do not run in lockstep
        i = rank
        while time.perf_counter() - start < window_s:
            (result,) = executor.execute([batches[i % len(batches)]])
            measured.extend((e.event_id, e.stop - e.start) for e in result.events)
            i += 1
        results.put((rank, measured, None))
    except BaseException as error:  # report instead of leaving the parent waiting
        barrier.abort()
        results.put((rank, measured, f"{type(error).__name__}: {error}"))


def measure_node_contention(
    refs: Sequence[Any],
    models_dir: Path | None,
    device: str,
    loader: Any = None,
    processes: int | None = None,
    window_s: float = 10.0,
) -> NodeContention:
    """Run the pipeline on ``refs`` (one event per batch) in ``processes`` single-threaded
    processes at once (default: every usable core), then in one alone; see the module docstring.

    ``loader`` must be picklable (a module-level function or classmethod) since the processes
    are spawned. Raises RuntimeError when a process fails.
    """
    if processes is None:
        processes = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    pickle.dumps(loader)  # fail here, not in N children, when the loader cannot travel
    batches = [Batch(i, (ref,)) for i, ref in enumerate(refs)]
    args = (models_dir, device, 1, loader)
    together = _run_processes(batches, processes, window_s, args) if processes > 1 else {}
    alone = _run_processes(batches, 1, window_s, args)
    if processes <= 1:
        together = alone
    slowdown = slowdown_from_times(alone, together)
    return NodeContention(
        cores=processes,
        slowdown=slowdown,
        alone_s=statistics.fmean(s for v in alone.values() for s in v),
        together_s=statistics.fmean(s for v in together.values() for s in v),
        events={"alone": sum(map(len, alone.values())), "together": sum(map(len, together.values()))},
        window_s=window_s,
    )
