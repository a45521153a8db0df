"""Three ways to run the pipeline over batches, behind one contract (client side).

Every executor performs the equivalent of ``for batch in batches: acc += process(batch)``: its
``execute(batches)`` yields one :class:`BatchResult` per batch, in the order batches finish.

* :class:`~trackflow.run.dask_executors.FusedExecutor` — one batch runs the whole pipeline on one
  worker (the study's custom backend): by default one call to that worker's pipeline actor
  (``workflow.dispatch: actor``, :mod:`trackflow.run.actors`), or one Dask task (``task``).
* :class:`~trackflow.run.dask_executors.StagedExecutor` — one Dask task per stage per batch; the
  graphs travel from task to task through Dask (the study's ensemble of per-stage models).
* :class:`DirectExecutor` — an in-process loop, no Dask (direct inference).

:data:`MODES` and :func:`make_executor` are the one mode → executor choice. What runs inside a
task is in :mod:`trackflow.run.worker_tasks`; what an event's error means (a failure of that event,
or a transient error the task is retried for) in :mod:`trackflow.run.event_errors`; how the
Dask executors retry, split and time out batches in :mod:`trackflow.run.dask_executors`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.run.attempts import merge_attempts, without_event
from trackflow.run.batching import Batch
from trackflow.run.dask_executors import (
    DISPATCHES,
    DaskExecutor,
    FusedExecutor,
    StagedExecutor,
    check_dispatch,
)
from trackflow.run.event_errors import TRANSIENT_ERRORS, TransientEventError, failure_from_transient
from trackflow.run.records import BatchResult, EventFailure
from trackflow.run.worker_tasks import DIRECT_WORKER, QuietRetries, process_batch

if TYPE_CHECKING:
    from distributed import Client

    from trackflow.pipeline import Pipeline

# The Dask executors, the worker-side names and the error classes lived here before the split:
# they stay importable from here (cli, benchmarks and notebooks import them from this module).
__all__ = [
    "DASK_MODES",
    "DIRECT_WORKER",
    "DISPATCHES",
    "MODES",
    "TRANSIENT_ERRORS",
    "DaskExecutor",
    "DirectExecutor",
    "Executor",
    "FusedExecutor",
    "QuietRetries",
    "StagedExecutor",
    "TransientEventError",
    "check_dispatch",
    "check_mode",
    "make_executor",
    "process_batch",
]

#: the ways to run the pipeline over batches, one executor each (``--mode``)
MODES = ("fused", "staged", "direct")
#: the modes that run on a Dask cluster
DASK_MODES = ("fused", "staged")


@dataclass
class DirectExecutor:
    """In-process loop over the batches with one pipeline: no Dask, no network, no queue.

    A transient error is retried ``retries`` times in place; then the event is reported failed
    and the rest of its batch goes on.
    """

    pipeline: Pipeline
    retries: int = field(default_factory=config.default("workflow.retries"))
    parts: tuple[str, ...] = ("hits",)
    name: str = "direct"

    def execute(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        for batch in batches:
            submitted = time.time()
            parts: list[BatchResult] = []
            failures: list[EventFailure] = []
            remaining, attempts = batch, 0
            while remaining.events:
                attempts += 1
                try:
                    parts.append(process_batch(self.pipeline, remaining, self.parts, task_name=self.name))
                    break
                except TransientEventError as error:
                    if attempts <= self.retries:
                        continue
                    failures.append(failure_from_transient(error, attempts))
                    remaining, attempts = without_event(remaining, error.event_id), 0
            result = merge_attempts(batch, parts, failures)
            result.submitted, result.received = submitted, time.time()
            yield result

    def close(self) -> None:
        """Nothing held outside this process."""


class Executor(Protocol):
    """The one contract of the three executors: ``execute(batches)`` yields one
    :class:`~trackflow.run.records.BatchResult` per batch, in the order batches finish (the
    equivalent of ``for batch in batches: acc += process(batch)``), failures inside the results
    as data. ``name`` is the mode it implements; ``close()`` releases what it holds on the
    cluster (the fused executor's pipeline actors), and it may ``execute`` again after."""

    name: str

    def execute(self, batches: Iterable[Batch]) -> Iterator[BatchResult]: ...

    def close(self) -> None: ...


def check_mode(mode: str, option: str = "mode") -> str:
    """``mode`` when it is one of :data:`MODES`; else a ConfigError naming ``option``."""
    if mode not in MODES:
        raise ConfigError(f"{option} {mode}: choose one of {', '.join(MODES)}")
    return mode


def make_executor(
    mode: str,
    *,
    pipeline: Pipeline | None = None,
    client: Client | None = None,
    plugin_name: str | None = None,
    retries: int | None = None,
    task_timeout: float | None = None,
    max_in_flight: int | None = None,
    gpu: bool = False,
    parts: tuple[str, ...] = ("hits",),
    dispatch: str | None = None,
) -> Executor:
    """The executor of ``mode``: ``direct`` runs ``pipeline`` in this process; ``fused`` and
    ``staged`` run on ``client``'s workers with the pipeline of the registered plugin
    ``plugin_name`` (``gpu``: the neural-network tasks ask for the GPU resource).
    ``retries`` and ``task_timeout`` (s): None = the settings ``workflow.retries`` and
    ``workflow.task_timeout``; ``dispatch`` (fused mode: ``actor`` or ``task``): None = the
    setting ``workflow.dispatch``."""
    check_mode(mode)
    if dispatch is not None:
        check_dispatch(dispatch)
    given: dict[str, Any] = {"retries": retries, "task_timeout": task_timeout}
    chosen = {name: value for name, value in given.items() if value is not None}
    if mode == "direct":
        if pipeline is None:
            raise ValueError("the direct executor needs a pipeline")
        chosen.pop("task_timeout", None)  # the loop runs in this process: nothing to time out
        return DirectExecutor(pipeline, parts=parts, **chosen)
    if client is None or plugin_name is None:
        raise ValueError(f"the {mode} executor needs a client and a registered plugin's name")
    if mode == "fused":
        if dispatch is not None:
            chosen["dispatch"] = dispatch
        return FusedExecutor(client, plugin_name, max_in_flight=max_in_flight, gpu=gpu, parts=parts, **chosen)
    return StagedExecutor(client, plugin_name, max_in_flight=max_in_flight, gpu=gpu, parts=parts, **chosen)
