"""The scaling efficiency measured side by side: the direct loop (no Dask) in a process of its
own (:class:`DirectProcess`), W such processes at once on the same W shares of the events
(:class:`PlainProcesses`: the node's own scaling, without Dask), and fused on the W-worker cluster
taking turns (:func:`scaling_rounds`).

This 2-core VM's speed drifts by 10-20 % within seconds, so a ratio of two points minutes apart
(the sweep's direct point, then the 2-worker points) ranged 0.86-0.99 over seven default runs, and
gave 1.24 in the first run once the points were replayed to 5 s.

Run in the bench's own process while a LocalCluster is open, the direct loop shares that process
with the cluster's scheduler and the client's event loop (their threads take the GIL for every
heartbeat and message): on the 2-core development VM its time per event was ~10 % longer than a
spawned process's in the same minutes (42 against 38 ms, 1.4k-hit events, 4 rounds each), which
would flatter the workers. A spawned process (one thread, the pipeline loaded and warmed once)
is what a worker is without Dask.

The plain processes answer "is the loss Dask's or the node's": on the 2-core VM, over ten default
benches, two of them on the same halves of the events reached a median 0.954 of twice one alone,
the 2 Dask workers in the same rounds 0.957 (fused ÷ plain median 0.999), with the same busy share
(0.95-0.96): one finishes its half before the other without Dask too (benchmarks/README.md).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from trackflow.bench.point_batches import PointBatches
from trackflow.run.batching import Batch
from trackflow.run.executors import DaskExecutor
from trackflow.run.records import BatchResult

__all__ = ["DirectProcess", "PlainProcesses", "scaling_rounds"]

#: s to wait for the process to load the pipeline, or for one batch (a few s of work) to come back
_TIMEOUT_S = 600.0


class DirectProcess:
    """A spawned process running the direct loop on the batches it is sent; :meth:`execute`
    returns their results as the in-process direct executor would. ``pipeline_args``: the
    arguments of :func:`~trackflow.run.plugin.load_pipeline` (the loader must be picklable).
    Use as a context manager; RuntimeError when the process fails to start or dies."""

    def __init__(self, pipeline_args: tuple[Any, ...], warm_up: Sequence[Batch] = ()) -> None:
        context = multiprocessing.get_context("spawn")
        self._requests = context.Queue()
        self._replies = context.Queue()
        self._process = context.Process(
            target=_serve, args=(pipeline_args, list(warm_up), self._requests, self._replies), daemon=True
        )
        self._process.start()
        self._reply()  # loaded and warmed up

    @property
    def pid(self) -> int | None:
        """The process's id (None once closed)."""
        return self._process.pid if self._process.is_alive() else None

    def execute(self, batches: Iterable[Batch]) -> list[BatchResult]:
        self._requests.put(list(batches))
        results: list[BatchResult] = self._reply()
        return results

    def _reply(self) -> Any:
        try:
            ok, value = self._replies.get(timeout=_TIMEOUT_S)
        except queue.Empty:
            code = self._process.exitcode
            raise RuntimeError(
                f"the direct process did not answer in {_TIMEOUT_S:.0f} s (exit code {code})"
            ) from None
        if not ok:
            raise RuntimeError(f"the direct process failed: {value}")
        return value

    def close(self) -> None:
        if self._process.is_alive():
            self._requests.put(None)
            self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()

    def __enter__(self) -> DirectProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlainProcesses:
    """``count`` direct loops, each in a process of its own (:class:`DirectProcess`), started
    together: what W one-thread workers are without Dask. :attr:`first` is the direct loop of the
    rounds. Use as a context manager; RuntimeError when a process fails to start or dies."""

    def __init__(self, pipeline_args: tuple[Any, ...], count: int, warm_up: Sequence[Batch] = ()) -> None:
        self.processes: list[DirectProcess] = []
        try:
            for _ in range(max(int(count), 1)):
                self.processes.append(DirectProcess(pipeline_args, warm_up))
        except BaseException:
            self.close()
            raise

    @property
    def first(self) -> DirectProcess:
        return self.processes[0]

    def execute(self, batches: Sequence[Batch]) -> list[BatchResult]:
        """Batch k to process k mod W, every process at once (its batches in order); the results
        once all are done. The share is fixed, as a plain job array's would be: with auto batches
        replayed a multiple of W times each process gets whole copies of the same events."""
        shares = [list(batches[k :: len(self.processes)]) for k in range(len(self.processes))]
        results: list[list[BatchResult]] = [[] for _ in self.processes]
        errors: list[BaseException] = []

        def run(k: int) -> None:
            try:
                results[k] = self.processes[k].execute(shares[k]) if shares[k] else []
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(shares))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"a plain process failed: {errors[0]}") from errors[0]
        return [r for share in results for r in share]

    def close(self) -> None:
        for process in self.processes:
            process.close()

    def __enter__(self) -> PlainProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(pipeline_args: tuple[Any, ...], warm_up: list[Batch], requests: Any, replies: Any) -> None:
    """The process: load the pipeline, run the warm-up, then run each batch list it is sent."""
    try:
        from trackflow.run.executors import make_executor
        from trackflow.run.plugin import load_pipeline

        executor = make_executor("direct", pipeline=load_pipeline(*pipeline_args))
        list(executor.execute(warm_up))
        replies.put((True, None))
    except BaseException as error:  # report instead of leaving the parent waiting
        replies.put((False, f"{type(error).__name__}: {error}"))
        return
    while (batches := requests.get()) is not None:
        try:
            replies.put((True, list(executor.execute(batches))))
        except BaseException as error:
            replies.put((False, f"{type(error).__name__}: {error}"))


def scaling_rounds(
    count: int,
    direct: DirectProcess,
    executor: DaskExecutor,
    batcher: PointBatches,
    slots: int,
    log: Callable[[dict[str, Any]], None],
    plain: PlainProcesses | None = None,
) -> list[dict[str, Any]]:
    """``count`` rounds of the direct loop (a process of its own, the cluster's workers idle),
    with ``plain`` the same W = ``slots`` processes at once on the point's batches (no Dask), and
    fused on the cluster (``executor``, at its in-flight limit), taking turns (direct, plain,
    fused in even rounds, the reverse in odd ones) over the point's events: per round, each one's
    events, wall seconds and busy seconds (the events' in-task time, summed)."""
    rounds: list[dict[str, Any]] = []
    runs: dict[str, Callable[[], list[BatchResult]]] = {"direct": lambda: direct.execute(batcher(1))}
    if plain is not None:
        runs["plain"] = lambda: plain.execute(batcher(slots))
    runs["fused"] = lambda: list(executor.execute(batcher(slots)))
    for number in range(count):
        measured: dict[str, Any] = {"round": number}
        order = list(runs) if number % 2 == 0 else list(runs)[::-1]
        for which in order:
            tic = time.perf_counter()
            results = runs[which]()
            wall = time.perf_counter() - tic
            events = sum(len(r.events) for r in results)
            busy = float(sum(e.stop - e.start for r in results for e in r.events))
            measured[which] = {
                "events": events,
                "wall_s": wall,
                "busy_s": busy,
                "events_per_second": events / wall,
            }
        rounds.append(measured)
        log(
            {
                "mode": "scaling",
                "workers": slots,
                "threads": 1,
                "concurrency": executor.max_in_flight,
                "hits": f"round {number + 1}/{count}",
                "events_per_second": measured["fused"]["events_per_second"],
            }
        )
    return rounds
