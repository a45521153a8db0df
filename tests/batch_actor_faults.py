"""A pipeline for the batch workflow's actor-dispatch fault tests: the real (tiny) pipeline,
except that preparing one event kills the worker process it runs in (SIGKILL, as the kernel's
OOM killer or a lost node would), the first ``kills`` times (marker files in ``marker_dir``
count them across worker processes)."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any


class KillingPipeline:
    """``inner``, with event ``event_id`` killing its worker ``kills`` times, then going through."""

    def __init__(self, inner: Any, event_id: int, kills: int, marker_dir: str) -> None:
        self.inner, self.event_id, self.kills, self.marker_dir = inner, event_id, kills, Path(marker_dir)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prepare(self, event: Any) -> Any:
        if event.event_id == self.event_id and len(list(self.marker_dir.glob("kill.*"))) < self.kills:
            (self.marker_dir / f"kill.{os.getpid()}.{uuid.uuid4().hex}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.prepare(event)


def killing_pipeline(inner_loader: Any, event_id: int, kills: int, marker_dir: str, **options: Any) -> Any:
    """Pipeline loader (``ReconstructConfig.pipeline_loader``, with functools.partial)."""
    return KillingPipeline(inner_loader(**options), event_id, kills, marker_dir)
