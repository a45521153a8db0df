"""A Dask worker preload that kills workers as they start (a node lost at start-up).

``distributed.worker.preload: [this file]`` with ``TRACKFLOW_TEST_WORKER_FAULT`` set to
``once:DIR`` (the first worker to start dies; DIR holds the marker), ``always`` (every worker
dies) or ``name:NAME`` (the worker called NAME dies each time).
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
