"""A pipeline for the serve fault tests: the real pipeline, except that one event first writes
its worker's pid to a directory and waits, so a test can kill that worker mid-request."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


class SlowPipeline:
    """``inner`` with event ``event_id`` held ``seconds`` s after announcing its worker's pid
    (a file named after it in ``marker_dir``)."""

    def __init__(self, inner: Any, event_id: int, seconds: float, marker_dir: str) -> None:
        self.inner, self.event_id, self.seconds, self.marker_dir = inner, event_id, seconds, Path(marker_dir)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prepare(self, event: Any) -> Any:
        if event.event_id == self.event_id:
            (self.marker_dir / str(os.getpid())).touch()
            time.sleep(self.seconds)
        return self.inner.prepare(event)


def slow_pipeline(
    inner_loader: Any, event_id: int, seconds: float, marker_dir: str, **options: Any
) -> SlowPipeline:
    """Pipeline loader (``ServiceConfig.pipeline_loader``, with functools.partial)."""
    return SlowPipeline(inner_loader(**options), event_id, seconds, marker_dir)
