"""The three executors behind one contract: errors as data, retries of transient failures only,
timeouts instead of hangs — the same behaviour in fused, staged and direct mode."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_workflow import TINY_PIPELINE, shared_local_client, write_small_events

from trackflow.events import list_events
from trackflow.pipeline.model_files import MODEL_STAGES
from trackflow.run.batching import Batch, make_batches
from trackflow.run.executors import DirectExecutor, FusedExecutor, StagedExecutor
from trackflow.run.plugin import PipelinePlugin, load_pipeline

BAD_EVENT = 6002


@pytest.fixture(scope="session")
def dask_client() -> Any:
    with shared_local_client() as client:
        yield client


class CountingPipeline:
    """The tiny pipeline, leaving a marker file each time an event is prepared or a stage runs,
    and raising OSError (a transient failure; ``fail_with="ValueError"``: a deterministic one)
    in ``fail_stage`` of ``fail_events`` for their first ``failures`` attempts. Marker files make
    the count visible across worker processes."""

    def __init__(
        self,
        pipeline: Any,
        marker_dir: str,
        fail_events: tuple[int, ...],
        failures: int,
        fail_stage: str,
        fail_with: str = "OSError",
    ) -> None:
        self.pipeline, self.marker_dir = pipeline, Path(marker_dir)
        self.fail_events, self.failures, self.fail_stage = fail_events, failures, fail_stage
        self.fail_with = {"OSError": OSError, "ValueError": ValueError}[fail_with]
        self.stage_names, self.device = pipeline.stage_names, pipeline.device

    def _mark(self, what: str) -> int:
        (self.marker_dir / f"{what}.{uuid.uuid4().hex}").touch()
        return len(list(self.marker_dir.glob(f"{what}.*")))

    def prepare(self, event: Any) -> Any:
        self._mark(f"prepare-{event.event_id}")
        return self.pipeline.prepare(event)

    def run_stage(self, name: str, graph: Any) -> Any:
        if name == self.fail_stage and graph.event_id in self.fail_events:
            attempt = self._mark(f"{name}-{graph.event_id}")
            if attempt <= self.failures:
                if self.fail_with is ValueError:
                    raise ValueError("data must be finite, check for nan or inf values")
                raise OSError(f"simulated transient failure, attempt {attempt}")
        return self.pipeline.run_stage(name, graph)

    def finish(self, graph: Any) -> Any:
        return self.pipeline.finish(graph)


def counting_loader(models_dir: Any = None, device: str = "cpu", threads: int = 1, **kwargs: Any) -> Any:
    return CountingPipeline(TINY_PIPELINE(device=device, threads=threads), **kwargs)


def count_markers(marker_dir: Path, what: str) -> int:
    return len(list(marker_dir.glob(f"{what}.*")))


@pytest.fixture(scope="module")
def events_with_a_bad_file(trackml_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("events")
    write_small_events(trackml_dir, directory, 4, first=6000)
    hits = directory / f"event{BAD_EVENT:09d}-hits.csv.gz"
    hits.unlink()
    (directory / f"event{BAD_EVENT:09d}-hits.csv").write_text(
        "hit_id,x,y,z,volume_id,layer_id,module_id\n1,nan,2,3,8,2,1\n"
    )
    return directory


def execute(mode: str, client: Any, batches: list[Batch], loader: Any, **options: Any) -> list:
    """Every BatchResult of ``batches`` through executor ``mode`` with pipelines from ``loader``."""
    if mode == "direct":
        executor = DirectExecutor(load_pipeline(None, "cpu", 1, loader), retries=options.get("retries", 2))
        return list(executor.execute(batches))
    plugin = PipelinePlugin(loader=loader)
    client.register_plugin(plugin)
    cls = FusedExecutor if mode == "fused" else StagedExecutor
    return list(cls(client, plugin.name, **{"task_timeout": 120, **options}).execute(batches))


MODES = ("direct", "fused", "staged")


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_file_fails_its_event_once_and_the_batch_goes_on(
    mode: str, events_with_a_bad_file: Path, dask_client: Any, tmp_path: Path
) -> None:
    loader = functools.partial(
        counting_loader, marker_dir=str(tmp_path), fail_events=(), failures=0, fail_stage=""
    )
    batches = make_batches(list_events(events_with_a_bad_file), batch_size=4)
    results = execute(mode, dask_client, batches, loader)
    assert len(results) == 1
    (result,) = results
    assert [f.event_id for f in result.failures] == [BAD_EVENT]
    failure = result.failures[0]
    assert failure.stage == "load" and failure.error == "EventFileError" and failure.attempts == 1
    assert failure.path is not None and failure.path.endswith(f"event{BAD_EVENT:09d}-hits.csv")
    assert "NaN" in failure.message and "\n" not in failure.line()
    good = [6000, 6001, 6003]
    assert [e.event_id for e in result.events] == good
    assert list(result.tracks["event_id"].unique()) == good
    # the bad file was not retried: the good events of its batch were prepared exactly once
    assert all(count_markers(tmp_path, f"prepare-{e}") == 1 for e in good)


@pytest.mark.parametrize("mode", MODES)
def test_a_transient_failure_is_retried(
    mode: str, events_with_a_bad_file: Path, dask_client: Any, tmp_path: Path
) -> None:
    loader = functools.partial(
        counting_loader, marker_dir=str(tmp_path), fail_events=(6001,), failures=1, fail_stage="filter"
    )
    batches = make_batches(list_events(events_with_a_bad_file, [6000, 6001]), batch_size=2)
    (result,) = execute(mode, dask_client, batches, loader, retries=2)
    assert result.failures == []
    assert [e.event_id for e in result.events] == [6000, 6001]
    assert count_markers(tmp_path, "filter-6001") == 2  # failed once, then went through


@pytest.mark.parametrize("mode", MODES)
def test_spent_retries_fail_only_that_event(
    mode: str, events_with_a_bad_file: Path, dask_client: Any, tmp_path: Path
) -> None:
    loader = functools.partial(
        counting_loader, marker_dir=str(tmp_path), fail_events=(6001,), failures=99, fail_stage="gnn"
    )
    batches = make_batches(list_events(events_with_a_bad_file, [6000, 6001, 6003]), batch_size=3)
    (result,) = execute(mode, dask_client, batches, loader, retries=1)
    assert [(f.event_id, f.stage, f.error, f.attempts) for f in result.failures] == [
        (6001, "gnn", "OSError", 2)
    ]
    assert "simulated transient failure" in result.failures[0].message
    assert count_markers(tmp_path, "gnn-6001") == 2  # the first try and one retry
    assert [e.event_id for e in result.events] == [6000, 6003]
    assert list(result.tracks["event_id"].unique()) == [6000, 6003]
    failure = result.failures[0]
    assert failure.path is not None and failure.path.endswith("event000006001-hits.csv.gz")
    assert failure.traceback is not None and "OSError: simulated transient failure" in failure.traceback
    assert "\n" not in failure.line() and "traceback in report.json" in failure.line()


@pytest.mark.parametrize("mode", MODES)
def test_a_deterministic_error_fails_its_event_once_with_its_traceback(
    mode: str, events_with_a_bad_file: Path, dask_client: Any, tmp_path: Path
) -> None:
    """A ValueError on one event's data (as graph building's "data must be finite") would recur
    on every retry: the event fails at once, the others of its batch go on, never rerun."""
    loader = functools.partial(
        counting_loader,
        marker_dir=str(tmp_path),
        fail_events=(6001,),
        failures=99,
        fail_stage="graph_building",
        fail_with="ValueError",
    )
    batches = make_batches(list_events(events_with_a_bad_file, [6000, 6001, 6003]), batch_size=3)
    (result,) = execute(mode, dask_client, batches, loader, retries=2)
    (failure,) = result.failures
    assert (failure.event_id, failure.stage, failure.error, failure.attempts) == (
        6001,
        "graph_building",
        "ValueError",
        1,
    )
    assert count_markers(tmp_path, "graph_building-6001") == 1  # not retried
    assert all(count_markers(tmp_path, f"prepare-{e}") == 1 for e in (6000, 6003))  # nor its batch
    assert [e.event_id for e in result.events] == [6000, 6003]
    assert failure.traceback is not None and "in run_stage" in failure.traceback
    hits = str(events_with_a_bad_file / "event000006001-hits.csv.gz")
    assert failure.line() == (
        f"event 6001 failed in graph_building: {hits}: ValueError: data must be finite, check for "
        "nan or inf values (internal error; traceback in report.json and trackflow.log)"
    )
    assert failure.to_dict()["traceback"] == failure.traceback


def test_worker_log_of_a_retried_task_is_kept_off_the_terminal() -> None:
    """distributed's "Compute Failed" record (with a traceback) of a trackflow task that raised
    TransientEventError is dropped; other tasks' records stay."""
    import logging

    from trackflow.run.worker_tasks import QuietRetries

    def record(key: str, exception_text: str) -> logging.LogRecord:
        return logging.LogRecord(
            "distributed.worker",
            logging.ERROR,
            __file__,
            1,
            "Compute Failed\nKey:       %s\nState:     %s\nTask:  %s\nException: %r\nTraceback: %r\n",
            (key, "executing", "<Task ...>", exception_text, "  File ..."),
            None,
        )

    quiet = QuietRetries()
    assert not quiet.filter(record("trackflow-fused-b00001-ab-2", "TransientEventError('event 1 ...')"))
    assert quiet.filter(record("user-task-1", "TransientEventError('event 1 ...')"))
    assert quiet.filter(record("trackflow-fused-b00001-ab-2", "KeyError('x')"))


@pytest.mark.parametrize("mode", ["fused", "staged"])
def test_a_missing_resource_times_out_instead_of_hanging(
    mode: str, events_with_a_bad_file: Path, dask_client: Any
) -> None:
    batches = make_batches(list_events(events_with_a_bad_file, [6000, 6001]), batch_size=1)
    # gpu=True asks for resources={"GPU": 1}; the test cluster has CPU workers only
    results = execute(mode, dask_client, batches, TINY_PIPELINE, gpu=True, task_timeout=2, retries=0)
    failures = sorted((f for r in results for f in r.failures), key=lambda f: f.event_id)
    assert [f.event_id for f in failures] == [6000, 6001]
    assert all(f.error == "TimeoutError" and f.stage == "task" for f in failures)
    assert all("task_timeout=2 s" in f.message and "no-worker" in f.message for f in failures)
    assert all(len(r.tracks) == 0 for r in results)


@pytest.mark.slow
def test_neural_network_stages_go_to_gpu_workers(events_with_a_bad_file: Path) -> None:
    """One CPU worker and one worker with the GPU resource (a flag only: no device here)."""
    from trackflow.cluster import open_cluster
    from trackflow.cluster.probes import worker_resources

    batches = make_batches(list_events(events_with_a_bad_file, [6000, 6001, 6003]), batch_size=1)
    with open_cluster("local", 1, 1, gpu_workers=1) as opened:
        client = opened.client
        gpu_workers = {a for a, r in worker_resources(client).items() if r.get("GPU")}
        assert len(gpu_workers) == 1
        fused = execute("fused", client, batches, TINY_PIPELINE, gpu=True)
        staged = execute("staged", client, batches, TINY_PIPELINE, gpu=True)
    assert all(r.failures == [] and len(r.events) == 1 for r in fused + staged)
    assert {t.worker for r in fused for t in r.tasks} == gpu_workers
    nn_tasks = [t for r in staged for t in r.tasks if t.name in MODEL_STAGES]
    assert len(nn_tasks) == 3 * len(MODEL_STAGES)
    assert {t.worker for t in nn_tasks} == gpu_workers


def test_malloc_tuning_applies_on_glibc_and_can_be_switched_off() -> None:
    import platform

    from trackflow import config
    from trackflow.run.plugin import tune_malloc

    if platform.libc_ver()[0] == "glibc":
        assert tune_malloc()
    with config.set(**{"workflow.tune_malloc": False}):
        assert not tune_malloc()
