"""Actor dispatch in the batch workflow (issue 30, ``workflow.dispatch: actor``): the fused
executor calls a pipeline actor per worker (one RPC per batch, :mod:`trackflow.run.actors`)
instead of sending each batch through the scheduler as a task, with the same tracks, and a
worker killed mid-batch costs time (or, when the event kills every worker, that event) — as
with tasks — never a hang."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from batch_actor_faults import killing_pipeline
from distributed.diagnostics.plugin import SchedulerPlugin
from test_workflow import TINY_PIPELINE, run, shared_local_client, write_small_events

from trackflow import config
from trackflow.cluster import ClusterOptions
from trackflow.errors import ConfigError
from trackflow.events import list_events
from trackflow.run.batching import make_batches
from trackflow.run.executors import FusedExecutor, make_executor
from trackflow.run.plugin import PipelinePlugin
from trackflow.run.reconstruct import ReconstructConfig
from trackflow.run.report import EXIT_FAILED_EVENTS, EXIT_OK

FIRST = 7100
KILLER = 7102


@pytest.fixture(scope="session")
def dask_client() -> Any:
    with shared_local_client() as client:
        yield client


@pytest.fixture(scope="module")
def events(trackml_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("actor_events")
    write_small_events(trackml_dir, directory, 6, first=FIRST)
    return directory


class TaskKeys(SchedulerPlugin):
    """Every task key the scheduler saw a transition of (the local scheduler runs in this
    process; the copy registered there is read back with run_on_scheduler)."""

    name = "trackflow-test-task-keys"

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        self.keys.add(str(key))


def watch_keys(client: Any) -> None:
    """Register :class:`TaskKeys` on ``client``'s scheduler (once) and forget the keys seen."""
    if not client.run_on_scheduler(lambda dask_scheduler: TaskKeys.name in dask_scheduler.plugins):
        client.register_plugin(TaskKeys())
    forget_keys(client)


def seen_keys(client: Any) -> set[str]:
    return set(
        client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.plugins[TaskKeys.name].keys))
    )


def forget_keys(client: Any) -> None:
    client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[TaskKeys.name].keys.clear())


def actors_on_workers(client: Any) -> int:
    return sum(client.run(lambda dask_worker: len(dask_worker.state.actors)).values())


def test_actor_dispatch_is_the_default_of_reconstruct_and_the_bench(events: Path, tmp_path: Path) -> None:
    assert config.get("workflow.dispatch") == "actor"
    assert ReconstructConfig(input_dir=events, out_dir=tmp_path / "out").dispatch == "actor"
    # the executor trackflow bench's sweep makes: make_executor with no dispatch given
    executor = make_executor("fused", client=object(), plugin_name="none")  # type: ignore[arg-type]
    assert isinstance(executor, FusedExecutor) and executor.dispatch == "actor"
    with config.set(**{"workflow.dispatch": "task"}):
        assert ReconstructConfig(input_dir=events, out_dir=tmp_path / "out").dispatch == "task"
        executor = make_executor("fused", client=object(), plugin_name="none")  # type: ignore[arg-type]
        assert isinstance(executor, FusedExecutor) and executor.dispatch == "task"
    with pytest.raises(ConfigError, match=r"^dispatch 'rpc': choose one of actor, task$"):
        ReconstructConfig(input_dir=events, out_dir=tmp_path / "out", dispatch="rpc")
    with pytest.raises(ConfigError, match=r"workflow\.dispatch 'rpc'"):
        make_executor("fused", client=object(), plugin_name="none", dispatch="rpc")  # type: ignore[arg-type]


def test_default_reconstruct_calls_actors_and_gives_the_tracks_of_tasks(
    events: Path, dask_client: Any, tmp_path: Path
) -> None:
    watch_keys(dask_client)
    actor = run(events, tmp_path / "actor", client=dask_client, batch_size=2)
    actor_keys = seen_keys(dask_client)
    forget_keys(dask_client)
    task = run(events, tmp_path / "task", client=dask_client, batch_size=2, dispatch="task")
    task_keys = seen_keys(dask_client)
    assert actor.exit_code == task.exit_code == EXIT_OK
    assert actor.report["dispatch"] == "actor" and task.report["dispatch"] == "task"
    # actor dispatch: one actor per worker, no batch through the scheduler; task dispatch: the reverse
    assert {k for k in actor_keys if k.startswith("trackflow-fused-")} == set()
    assert len({k for k in actor_keys if k.startswith("trackflow-actor-")}) == 2
    assert len({k for k in task_keys if k.startswith("trackflow-fused-")}) == 3
    assert {k for k in task_keys if k.startswith("trackflow-actor-")} == set()
    # the same tracks, byte for byte, and the events ran on the workers (not in this process)
    assert actor.submission_path.read_bytes() == task.submission_path.read_bytes()
    workers = set(dask_client.scheduler_info(n_workers=-1)["workers"])
    assert {e["worker"] for e in actor.report["per_event"]} <= workers
    # the run released its actors
    deadline = time.monotonic() + 30
    while actors_on_workers(dask_client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert actors_on_workers(dask_client) == 0


def test_the_actors_stay_between_runs_of_one_executor_and_go_with_close(
    events: Path, dask_client: Any
) -> None:
    plugin = PipelinePlugin(loader=TINY_PIPELINE)
    dask_client.register_plugin(plugin)
    batches = make_batches(list_events(events), batch_size=1)
    executor = FusedExecutor(dask_client, plugin.name, task_timeout=120)
    try:
        first = list(executor.execute(batches[:2]))
        assert actors_on_workers(dask_client) == 2
        watch_keys(dask_client)
        second = list(executor.execute(batches))
        assert {
            k for k in seen_keys(dask_client) if k.startswith("trackflow-")
        } == set()  # no task, no new actor
    finally:
        executor.close()
    assert [len(r.events) for r in first + second] == [1] * 8 and not any(r.failures for r in second)
    deadline = time.monotonic() + 30
    while actors_on_workers(dask_client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert actors_on_workers(dask_client) == 0


@pytest.mark.slow
def test_a_worker_killed_mid_batch_sends_the_batch_to_another_worker(
    events: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Event 7102 kills the worker running its batch (SIGKILL) once: the batch goes to the other
    worker's actor and the run ends with every event done, tracks as the direct loop's."""
    markers = tmp_path / "markers"
    markers.mkdir()
    clean = run(events, tmp_path / "clean", mode="direct", batch_size=3)
    loader = functools.partial(killing_pipeline, TINY_PIPELINE, KILLER, 1, str(markers))
    with caplog.at_level(logging.WARNING, logger="trackflow.run.dask_executors"):
        report = run(
            events,
            tmp_path / "out",
            mode="fused",
            cluster=ClusterOptions(workers=2),
            pipeline_loader=loader,
            batch_size=3,
            task_timeout=300,
        )
    assert report.exit_code == EXIT_OK, report.report["failed_events"]
    assert len(list(markers.glob("kill.*"))) == 1
    assert "died running a batch" in caplog.text and "another worker gets it" in caplog.text
    assert sorted(e["event_id"] for e in report.report["per_event"]) == list(range(FIRST, FIRST + 6))
    pd.testing.assert_frame_equal(pd.read_csv(report.submission_path), pd.read_csv(clean.submission_path))


@pytest.mark.slow
def test_an_event_that_kills_every_worker_fails_alone_as_killed_worker(events: Path, tmp_path: Path) -> None:
    """Event 7102 kills every worker it runs on: its batch's calls kill allowed-failures + 1 = 2
    workers, then its events run alone; 7102 fails as KilledWorker with its size, the others are
    done, and the run ends (task_timeout is the backstop, far off)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    loader = functools.partial(killing_pipeline, TINY_PIPELINE, KILLER, 99, str(markers))
    started = time.monotonic()
    report = run(
        events,
        tmp_path / "out",
        mode="fused",
        cluster=ClusterOptions(workers=2),
        pipeline_loader=loader,
        batch_size=3,
        task_timeout=300,
    )
    assert time.monotonic() - started < 280  # ended on its own, not at the timeout
    assert report.exit_code == EXIT_FAILED_EVENTS
    (failure,) = report.report["failed_events"]
    assert (failure["event_id"], failure["stage"], failure["error"], failure["attempts"]) == (
        KILLER,
        "task",
        "KilledWorker",
        2,
    )
    assert "killed every worker it ran on (2 tried" in failure["message"]
    assert "no memory restart recorded" in failure["message"]
    done = sorted(e["event_id"] for e in report.report["per_event"])
    assert done == [e for e in range(FIRST, FIRST + 6) if e != KILLER]
    # the batch's 2, then 7102 alone twice (no memory restart: one more try of its own), 2 each; one
    # more when a call dies while no other actor is ready yet and the batch goes on as a task, whose
    # deaths Dask counts afresh (trackflow/run/dask_executors.py, module docstring): CI saw 7 once
    assert len(list(markers.glob("kill.*"))) in (6, 7)
