"""Worker faults for tests: a Dask worker preload that kills workers as they start (a node lost
at start-up), and a pipeline that eats memory on one event (a worker killed for memory).

``distributed.worker.preload: [this file]`` with ``TRACKFLOW_TEST_WORKER_FAULT`` set to
``once:DIR`` (the first worker to start dies; DIR holds the marker), ``always`` (every worker
dies) or ``name:NAME`` (the worker called NAME dies each time).

:func:`hungry_pipeline` is a ``pipeline_loader``: the real pipeline, except that one event
allocates memory until Dask's nanny kills the worker past its memory limit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FAULT = "TRACKFLOW_TEST_WORKER_FAULT"


def dask_setup(worker: Any) -> None:
    mode, _, arg = os.environ.get(FAULT, "").partition(":")
    if mode == "once":
        try:
            os.close(os.open(Path(arg) / "died", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)
    if mode == "always" or (mode == "name" and str(worker.name) == arg):
        os._exit(1)


class HungryPipeline:
    """A pipeline (``inner``) that, preparing event ``event_id``, allocates memory 20 MB at a time
    until Dask's nanny kills its worker (up to ``cap_bytes``: past that, MemoryError, so a nanny
    that never acts fails the test instead of the machine). Every other event runs as usual."""

    def __init__(self, inner: Any, event_id: int, cap_bytes: int) -> None:
        self.inner, self.event_id, self.cap_bytes = inner, event_id, cap_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prepare(self, event: Any) -> Any:
        if event.event_id == self.event_id:
            import time

            import numpy as np

            held = []
            while len(held) * 20_000_000 < self.cap_bytes:
                held.append(np.ones(2_500_000))  # 20 MB, touched
                time.sleep(0.02)
            raise MemoryError(f"{self.cap_bytes} bytes held and the nanny did not act")
        return self.inner.prepare(event)


def hungry_pipeline(inner_loader: Any, event_id: int, cap_bytes: int, **options: Any) -> HungryPipeline:
    """Pipeline loader (``ReconstructConfig.pipeline_loader``, with functools.partial)."""
    return HungryPipeline(inner_loader(**options), event_id, cap_bytes)


class BuggyPipeline(HungryPipeline):
    """A pipeline (``inner``) with a bug that shows on event ``event_id``: preparing it raises
    a ZeroDivisionError (an internal error, not bad data)."""

    def prepare(self, event: Any) -> Any:
        if event.event_id == self.event_id:
            return 1 // 0
        return self.inner.prepare(event)


def buggy_pipeline(inner_loader: Any, event_id: int, **options: Any) -> BuggyPipeline:
    """Pipeline loader (``ReconstructConfig.pipeline_loader``, with functools.partial)."""
    return BuggyPipeline(inner_loader(**options), event_id, 0)
