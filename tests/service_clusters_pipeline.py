"""A pipeline for the several-clusters service tests: the real pipeline, each event held
``seconds`` s first, so that batches are still in flight when a test closes a cluster."""

from __future__ import annotations

import time
from typing import Any


class PacedPipeline:
    """``inner``, with every event's ``prepare`` held ``seconds`` s."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prepare(self, event: Any) -> Any:
        time.sleep(self.seconds)
        return self.inner.prepare(event)


def paced_pipeline(inner_loader: Any, seconds: float, **options: Any) -> PacedPipeline:
    """Pipeline loader (``ServiceConfig.pipeline_loader``, with functools.partial)."""
    return PacedPipeline(inner_loader(**options), seconds)
