"""``trackflow reconstruct``: every event of a directory through the pipeline, in batches.

:func:`reconstruct` lists the events, cuts them into batches, skips the batches an earlier run
with the same ``out_dir`` finished, runs the rest with the chosen executor (``fused``, ``staged``
or ``direct``), writes each batch's tracks as it arrives, and at the end ``submission.csv`` (in
event order) and ``report.json``. Events are read without truth; truth is read afterwards, only
to score the submission when the inputs have it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trackflow import config
from trackflow.cluster.options import ClusterOptions, check_cluster
from trackflow.cluster.probes import (
    bytes_between_workers,
    client_scheduler_rtt,
    scheduler_worker_rtt,
    worker_resources,
    worker_threads,
)
from trackflow.cluster.resources import offers_gpu
from trackflow.errors import ConfigError, EventFileError
from trackflow.events.trackml import EventRef, list_events
from trackflow.files import sha256_file
from trackflow.run.batching import AUTO, Batch, make_batches
from trackflow.run.executors import check_dispatch, check_mode, make_executor
from trackflow.run.outputs import RunOutputs, writing
from trackflow.run.plugin import PipelineLoader, PipelinePlugin, load_pipeline
from trackflow.run.progress import EventProgress
from trackflow.run.records import BatchResult, EventFailure
from trackflow.run.report import NetworkStats, RunReport, RunStats, build_report
from trackflow.run.run_log import LOG_NAME, RunLog
from trackflow.run.tracking_plots import TruthPlots, write_run_plots

if TYPE_CHECKING:
    from distributed import Client

    from trackflow.pipeline.settings import PipelineSettings

logger = logging.getLogger(__name__)

#: what reconstruction reads of an event: never truth
EVENT_PARTS = ("hits",)


@dataclass
class ReconstructConfig:
    """The options of ``trackflow reconstruct`` (None = the default from ``trackflow.config``).

    ``cluster``: where the workers come from and how many (:class:`~trackflow.cluster.ClusterOptions`:
    spec, workers, threads per worker, GPU workers, adaptive range, scheduler file, Slurm profile,
    TLS); by default a LocalCluster of one single-threaded worker per core; ``threads_per_worker``
    is also the direct loop's torch threads. ``batch_size``: events per batch, or ``"auto"`` (sized from the
    events' hits and balanced over the worker slots, :class:`trackflow.run.batching.AutoBatching`);
    ``max_hits_per_batch`` batches by hits instead. ``max_in_flight``: batches submitted at once
    (None = 2 × workers).
    ``dispatch`` (fused mode): ``actor`` (each batch one call to a worker's pipeline actor, ~2 ms
    instead of a task's trip through the scheduler) or ``task``
    (:mod:`trackflow.run.dask_executors`).
    ``retries``: Dask retries of transient task failures (bad files are never retried).
    ``task_timeout``: s a batch may take from submission to result before it is reported
    failed (a task asking for a resource no worker has fails this way instead of hanging).
    ``progress``: None = a bar when stderr is a terminal.
    ``settings``: explicit pipeline settings, dotted as in ``trackflow.yaml``
    (``{"pipeline.graph_building.radius": 0.09}``), the strongest source; recorded in
    ``report.json`` as ``settings_source`` (``cli`` for ``--set``, else ``argument``).

    For tests and notebooks: ``client`` runs on an existing Dask client instead of opening a
    cluster; ``pipeline_loader`` replaces ``Pipeline.load`` (called with models_dir, device,
    threads), e.g. ``Pipeline.random_init``.
    """

    input_dir: Path
    out_dir: Path
    models_dir: Path | None = None
    device: str = field(default_factory=config.default("device"))
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    mode: str = field(default_factory=config.default("workflow.mode"))
    dispatch: str = field(default_factory=config.default("workflow.dispatch"))
    batch_size: int | str | None = None
    max_hits_per_batch: int | None = None
    max_in_flight: int | None = None
    performance_report: Path | None = None
    overwrite: bool = False
    retries: int = field(default_factory=config.default("workflow.retries"))
    task_timeout: float = field(default_factory=config.default("workflow.task_timeout"))
    event_ids: list[int] | None = None
    progress: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    settings_source: str = "argument"
    client: Client | None = field(default=None, repr=False)
    pipeline_loader: PipelineLoader | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.input_dir = Path(self.input_dir)
        self.out_dir = Path(self.out_dir)
        check_mode(self.mode)
        self.dispatch = check_dispatch(str(self.dispatch), "dispatch")
        self.device = str(self.device)
        self.retries = int(self.retries)
        self.task_timeout = float(self.task_timeout)
        if self.max_hits_per_batch is None:
            self.max_hits_per_batch = config.get("workflow.max_hits_per_batch")
        if self.batch_size is None and self.max_hits_per_batch is None:
            self.batch_size = config.get("workflow.batch_size")
        if self.batch_size is not None and self.batch_size != AUTO:
            try:
                self.batch_size = int(self.batch_size)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"workflow.batch_size: a number of events or 'auto', got {self.batch_size!r}"
                ) from None
        if self.max_in_flight is None:
            self.max_in_flight = config.get("workflow.max_in_flight")
        self.cluster = check_cluster(self.cluster)
        if self.retries < 0:
            raise ConfigError(f"retries {self.retries}: must be >= 0")
        if self.out_dir.resolve() == self.input_dir.resolve():
            raise ConfigError(f"out_dir {self.out_dir}: must not be the input directory")
        if self.settings and self.pipeline_loader is not None:
            raise ConfigError("settings: apply to a model directory, not to a pipeline_loader")


def _fingerprint(cfg: ReconstructConfig, settings: PipelineSettings | None) -> dict[str, Any]:
    """What makes two runs' outputs the same: inputs, models, pipeline settings, batching."""
    if cfg.pipeline_loader is not None:
        name = getattr(cfg.pipeline_loader, "__qualname__", None) or repr(cfg.pipeline_loader)
        models = "loader:" + re.sub(r" at 0x[0-9a-f]+", "", name)  # no memory addresses
    else:
        from trackflow.pipeline.model_files import shipped_models_dir

        directory = Path(cfg.models_dir) if cfg.models_dir is not None else shipped_models_dir()
        manifest = directory / "manifest.json"
        models = f"sha256:{sha256_file(manifest)}" if manifest.is_file() else str(directory.resolve())
    return {
        "input_dir": str(cfg.input_dir.resolve()),
        "models": models,
        "pipeline": config.get("pipeline") if settings is None else settings.values(),
        "device": cfg.device,
        "batch_size": cfg.batch_size,
        "max_hits_per_batch": cfg.max_hits_per_batch,
    }


def _resolve_settings(cfg: ReconstructConfig) -> PipelineSettings | None:
    """The run's pipeline settings, resolved once here (the workers build exactly these); refuses
    missing or tampered model files and bad settings in one line before any worker starts (the
    workers check the files again when they load them). None with a ``pipeline_loader``."""
    if cfg.pipeline_loader is not None:
        return None
    from trackflow.pipeline import model_files
    from trackflow.pipeline.settings import resolve_settings

    settings = resolve_settings(cfg.models_dir, cfg.settings, override_source=cfg.settings_source)
    model_files.verify(model_files.read_manifest(settings.models_dir))
    return settings


def _worker_slots(cfg: ReconstructConfig) -> int:
    """Tasks the run's cluster runs at once, as the run asks for them (known before it starts, so
    a resumed run cuts the same batches): the given client's worker threads, else
    :meth:`ClusterOptions.slots`; 1 in direct mode."""
    if cfg.mode == "direct":
        return 1
    if cfg.client is not None:
        return max(sum(cfg.client.nthreads().values()), 1)
    return cfg.cluster.slots()


@contextlib.contextmanager
def _client(cfg: ReconstructConfig) -> Iterator[Client]:
    """The run's client: the one given, or a cluster opened (and closed) for the run."""
    if cfg.client is not None:
        yield cfg.client
        return
    with cfg.cluster.open() as handle:
        for problem in handle.start_problems:  # workers lost at start-up: the run goes on without them
            logger.warning("%s", problem)
        yield handle.client


@dataclass
class _Collected:
    results: list[BatchResult] = field(default_factory=list)
    wall_s: float = 0.0
    threads: dict[str, int] = field(default_factory=dict)
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    network: NetworkStats = field(default_factory=NetworkStats)
    dashboard: str | None = None
    result_bytes: int = 0


def _drain(
    results: Iterator[BatchResult],
    outputs: RunOutputs,
    progress: EventProgress,
    collected: _Collected,
    run_log: RunLog,
) -> None:
    """Write each batch as it arrives; failures go to stderr as one line each (and to the report),
    an internal error's traceback to trackflow.log."""
    # closed here, also when a write fails (a full disk): left to the garbage collector, the
    # executor would cancel its leftover tasks on a client already closed
    with contextlib.closing(results):  # type: ignore[type-var]
        for result in results:
            outputs.write_batch(result)
            for failure in result.failures:
                progress.write(failure.line())
                if failure.traceback is not None:
                    run_log.traceback(failure.line(), failure.traceback)
            progress.update(len(result.events), len(result.failures))
            collected.result_bytes += int(result.tracks.memory_usage(index=False).sum())
            # the tracks are on disk now; a long campaign must not hold every event's rows in memory
            result.tracks = result.tracks.iloc[0:0]
            collected.results.append(result)


def _run_direct(
    cfg: ReconstructConfig,
    settings: PipelineSettings | None,
    todo: list[Batch],
    outputs: RunOutputs,
    progress: EventProgress,
    run_log: RunLog,
) -> _Collected:
    pipeline = load_pipeline(
        cfg.models_dir, cfg.device, cfg.cluster.threads_per_worker, cfg.pipeline_loader, settings
    )
    executor = make_executor("direct", pipeline=pipeline, retries=cfg.retries, parts=EVENT_PARTS)
    collected = _Collected(threads={"direct": cfg.cluster.threads_per_worker})
    start = time.time()
    _drain(executor.execute(todo), outputs, progress, collected, run_log)
    collected.wall_s = time.time() - start
    return collected


def _run_dask(
    cfg: ReconstructConfig,
    settings: PipelineSettings | None,
    todo: list[Batch],
    outputs: RunOutputs,
    progress: EventProgress,
    run_log: RunLog,
) -> _Collected:
    from distributed import performance_report

    collected = _Collected()
    with _client(cfg) as client:
        collected.dashboard = client.dashboard_link
        progress.write(f"dashboard: {client.dashboard_link}")
        plugin = PipelinePlugin(
            cfg.models_dir, cfg.device, cfg.cluster.threads_per_worker, cfg.pipeline_loader, settings
        )
        client.register_plugin(plugin)
        collected.resources = worker_resources(client)
        gpu = any(offers_gpu(r) for r in collected.resources.values())
        executor = make_executor(
            str(cfg.mode),
            client=client,
            plugin_name=plugin.name,
            retries=cfg.retries,
            task_timeout=cfg.task_timeout,
            max_in_flight=cfg.max_in_flight,
            gpu=gpu,
            parts=EVENT_PARTS,
            dispatch=cfg.dispatch,
        )
        collected.threads = worker_threads(client)
        rtt = scheduler_worker_rtt(client)
        client_rtt = client_scheduler_rtt(client)
        report_cm = (
            performance_report(filename=str(cfg.performance_report))
            if cfg.performance_report is not None
            else contextlib.nullcontext()
        )
        start = time.time()
        with report_cm, contextlib.closing(executor):
            _drain(executor.execute(todo), outputs, progress, collected, run_log)
        collected.wall_s = time.time() - start
        # workers that joined during the run (adaptive scaling, replaced jobs) count too
        collected.resources = {**worker_resources(client), **collected.resources}
        collected.network = NetworkStats(
            bytes_between_workers=bytes_between_workers(client, since=start),
            result_bytes=collected.result_bytes,
            scheduler_worker_rtt=rtt,
            client_scheduler_rtt=client_rtt,
        )
    return collected


def _score(
    cfg: ReconstructConfig,
    submission: Path,
    refs: list[EventRef],
    done: set[int],
    truth_plots: TruthPlots | None = None,
) -> tuple[dict[str, Any] | None, list[EventFailure]]:
    """Efficiency of the done events that have truth and particles (trackflow.metrics), and a
    ``score`` failure for each whose truth cannot be used (e.g. its hit ids match another event).
    Each scored event also fills ``truth_plots``."""
    with_truth = [r for r in refs if r.event_id in done and {"truth", "particles"} <= r.paths.keys()]
    if not with_truth:
        return None, []
    from trackflow.metrics import score_submission

    good, failures = [], []
    for ref in with_truth:
        try:
            ref.load(("hits", "truth", "particles"))
        except EventFileError as error:
            failures.append(EventFailure.from_exception(ref.event_id, "score", error))
        else:
            good.append(ref.event_id)
    if not good:
        return None, failures
    on_event = None if truth_plots is None else truth_plots.add_event
    summary = score_submission(cfg.input_dir, submission, event_ids=good, on_event=on_event)
    return {k: v for k, v in summary.items() if k != "events"}, failures


def reconstruct(cfg: ReconstructConfig) -> RunReport:
    """Reconstruct every event of ``cfg.input_dir``; write outputs to ``cfg.out_dir``.

    Returns the :class:`RunReport` (``exit_code`` 0: every event done; 3: some failed). Raises
    TrackflowError subclasses for problems with the options, the input directory or the models.
    """
    refs = list_events(cfg.input_dir, cfg.event_ids)
    if not refs:
        raise EventFileError(cfg.input_dir, "holds no TrackML events (eventNNNNNNNNN-hits.csv[.gz])")
    pipeline_settings = _resolve_settings(cfg)
    truth_plots = TruthPlots()  # a bad plots.* setting is refused here, before any work
    batches = make_batches(refs, cfg.batch_size, cfg.max_hits_per_batch, slots=_worker_slots(cfg))
    outputs = RunOutputs(cfg.out_dir, _fingerprint(cfg, pipeline_settings), overwrite=cfg.overwrite)
    try:
        with writing(cfg.out_dir / LOG_NAME, cfg.out_dir, 0):
            run_log = RunLog(cfg.out_dir)
        with run_log:
            return _reconstruct_into(cfg, refs, batches, outputs, pipeline_settings, truth_plots, run_log)
    finally:
        # released by the report's write; an error on the way (a full disk) must not keep it
        outputs.lock.release()


def _reconstruct_into(
    cfg: ReconstructConfig,
    refs: list[EventRef],
    batches: list[Batch],
    outputs: RunOutputs,
    pipeline_settings: PipelineSettings | None,
    truth_plots: TruthPlots,
    run_log: RunLog,
) -> RunReport:
    """The run itself, into ``outputs`` opened (and locked) by :func:`reconstruct`."""
    finished = {b.batch_id: outputs.finished(b) for b in batches}
    todo = [b for b in batches if finished[b.batch_id] is None]
    resumed = [entry for entry in finished.values() if entry is not None]
    resumed_events = [e for entry in resumed for e in entry.events]
    resumed_failures = [f for entry in resumed for f in entry.failure_objects()]

    with EventProgress(
        len(refs), cfg.progress, initial=len(resumed_events) + len(resumed_failures)
    ) as progress:
        if not todo:
            collected = _Collected()
        elif cfg.mode == "direct":
            collected = _run_direct(cfg, pipeline_settings, todo, outputs, progress, run_log)
        else:
            collected = _run_dask(cfg, pipeline_settings, todo, outputs, progress, run_log)

    outputs.write_manifest()
    submission = outputs.write_submission(batches)
    done = {e["event_id"] for e in resumed_events} | {e.event_id for r in collected.results for e in r.events}
    efficiency, score_failures = _score(cfg, submission, refs, done, truth_plots)
    for failure in score_failures:  # one line each on stderr, as the run's failures were
        progress.write(failure.line())
    failures: list[EventFailure] = sorted(
        [*resumed_failures, *(f for r in collected.results for f in r.failures), *score_failures],
        key=lambda f: f.event_id,
    )
    settings = {
        "mode": cfg.mode,
        # how fused batches reached the workers (the executor falls back to tasks where needed)
        "dispatch": cfg.dispatch if cfg.mode == "fused" else None,
        "cluster": "direct"
        if cfg.mode == "direct"
        else (cfg.cluster.spec if cfg.client is None else "client"),
        "dashboard": collected.dashboard,
        "device": cfg.device,
        "n_workers": len(collected.threads) or (1 if cfg.mode == "direct" else cfg.cluster.worker_count()),
        "threads_per_worker": cfg.cluster.threads_per_worker,
        "batch_size": cfg.batch_size,
        "max_hits_per_batch": cfg.max_hits_per_batch,
        "batches": len(batches),
        "max_in_flight": cfg.max_in_flight,
        "retries": cfg.retries,
        "task_timeout_s": cfg.task_timeout,
        # every stage's effective settings and each value's source (null with a pipeline_loader)
        "pipeline": None if pipeline_settings is None else pipeline_settings.to_dict(),
    }
    stats = RunStats(
        settings=settings,
        results=collected.results,
        resumed_events=resumed_events,
        resumed_failures=resumed_failures,
        total_events=len(refs),
        wall_s=collected.wall_s,
        worker_threads=collected.threads,
        worker_resources=collected.resources,
        network=collected.network,
        efficiency=efficiency,
        score_failures=score_failures,
        outputs={
            "submission": str(submission),
            "manifest": str(outputs.manifest_path),
            "batches": str(outputs.batch_dir),
            "report": str(outputs.report_path),
            "log": str(run_log.path),
            "performance_report": None if cfg.performance_report is None else str(cfg.performance_report),
        },
    )
    report = build_report(stats)
    # beside report.json, listed in it; a picture that fails is a warning, never a failed run
    report["outputs"]["plots"] = [str(p) for p in write_run_plots(report, cfg.out_dir, truth_plots)]
    report_path = outputs.write_report(report)
    return RunReport(report=report, report_path=report_path, submission_path=submission, failures=failures)
