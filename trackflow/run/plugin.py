"""The per-worker pipeline: models loaded once per worker process, never shipped per task.

``client.register_plugin(PipelinePlugin(...))`` runs :meth:`PipelinePlugin.setup` on every worker,
now and on workers that join later (adaptive scaling, a restarted worker after a crash). Tasks
fetch the loaded pipeline with :func:`worker_pipeline`.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dask.base import tokenize
from distributed import WorkerPlugin, get_worker

from trackflow import config
from trackflow.cluster.resources import offers_gpu

if TYPE_CHECKING:
    from distributed import Worker

    from trackflow.pipeline import Pipeline
    from trackflow.pipeline.settings import PipelineSettings

PipelineLoader = Callable[..., "Pipeline"]
logger = logging.getLogger(__name__)


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the OS at once.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's
    mmap threshold at 128 KiB: every tensor larger than that is then mmap'ed and unmapped again,
    and the page faults made the pipeline 1.4-2.4x slower in a worker than in a plain process
    (same events, same thread count). Fixed thresholds of 32 MiB (mmap) and 64 MiB (trim), the
    values glibc's own dynamic rule reaches, restore the plain speed at the cost of up to 64 MiB
    of freed memory kept per process. Off with ``workflow.tune_malloc: false``. Returns True when
    applied (glibc only).
    """
    if not config.get("workflow.tune_malloc"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20))
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False


def load_pipeline(
    models_dir: Path | None,
    device: str,
    threads: int,
    loader: PipelineLoader | None = None,
    settings: PipelineSettings | None = None,
) -> Pipeline:
    """Set the thread counts of this process, then load the pipeline.

    ``settings`` (resolved on the client, :func:`~trackflow.pipeline.settings.resolve_settings`):
    exactly that pipeline, whatever this process's dask config says. Else ``loader``, called as
    ``loader(models_dir=..., device=..., threads=...)`` (tests and notebooks pass one that builds
    a pipeline from freshly initialised models), else ``Pipeline.load``.
    """
    from trackflow.pipeline.threads import set_threads

    tune_malloc()
    set_threads(threads)
    if settings is not None and loader is None:
        from trackflow.pipeline import Pipeline

        return Pipeline.from_settings(settings, device=device, threads=threads)
    if loader is None:
        from trackflow.pipeline import Pipeline

        loader = Pipeline.load
    return loader(models_dir=models_dir, device=device, threads=threads)


class PipelinePlugin(WorkerPlugin):
    """Loads the pipeline once per worker and sets its thread counts.

    ``device``: where the neural-network stages run on workers without a ``GPU`` resource; a
    worker started with ``--resources GPU=1`` uses ``cuda`` (when torch sees a CUDA device; a
    GPU-flagged worker without one, as in a test cluster, keeps ``device`` and logs a warning).

    ``threads``: the threads a worker may keep busy (``--threads-per-worker``). A worker runs
    ``nthreads`` tasks at once, so each task's torch/FAISS/OpenMP pools get
    ``threads // nthreads`` (at least 1): T tasks of one thread each rather than T tasks of T
    threads each, the oversubscription the study saw between FAISS and its caller.

    ``settings``: the pipeline settings resolved on the client; every worker builds exactly
    that pipeline (a worker's own dask config, e.g. on a Slurm node, plays no part).
    """

    idempotent = True

    def __init__(
        self,
        models_dir: Path | None = None,
        device: str = "cpu",
        threads: int = 1,
        loader: PipelineLoader | None = None,
        settings: PipelineSettings | None = None,
    ) -> None:
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.device = device
        self.threads = threads
        self.loader = loader
        self.settings = settings
        # the name depends on the settings: a second run with other models or settings on the
        # same cluster registers its own plugin instead of silently reusing the first one
        values = None if settings is None else settings.values()
        self.name = f"trackflow-pipeline-{tokenize(str(self.models_dir), device, threads, loader, values)}"
        self.pipeline: Pipeline | None = None

    def setup(self, worker: Worker) -> None:
        device = self.device
        if offers_gpu(worker.state.total_resources):
            import torch

            if torch.cuda.is_available():
                device = "cuda"
            else:
                logger.warning("worker %s has the GPU resource but torch sees no CUDA device", worker.address)
        threads = max(1, self.threads // max(1, worker.state.nthreads))
        self.pipeline = load_pipeline(self.models_dir, device, threads, self.loader, self.settings)

    def teardown(self, worker: Worker) -> None:
        self.pipeline = None

    def __getstate__(self) -> dict[str, Any]:
        # only the settings travel to the workers, never a loaded pipeline
        return {**self.__dict__, "pipeline": None}

    def __repr__(self) -> str:
        return f"PipelinePlugin(models_dir={self.models_dir}, device={self.device!r}, threads={self.threads})"


def worker_pipeline(plugin_name: str) -> Pipeline:
    """The pipeline the plugin ``plugin_name`` loaded in this worker (call inside a task)."""
    plugin = get_worker().plugins.get(plugin_name)
    pipeline = getattr(plugin, "pipeline", None)  # a PipelinePlugin's, once set up
    if pipeline is None:
        raise RuntimeError(f"worker has no loaded pipeline (plugin {plugin_name} not set up)")
    return pipeline
