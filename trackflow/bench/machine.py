"""Where a bench ran (host, CPU, memory, library versions, GPU) and how big its results were."""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trackflow.run.records import BatchResult


def machine_info(device: str) -> dict[str, Any]:
    """Where the bench ran: host, CPU model and count, memory, library versions, the GPU if any."""
    import dask
    import distributed
    import psutil
    import torch

    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "device": device,
        "torch": torch.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "numpy": np.__version__,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None,
    }
    try:
        import faiss

        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    return info


def result_bytes(results: Sequence[BatchResult]) -> int:
    """Bytes of the results' track frames, as Dask would count them moving."""
    from dask.sizeof import sizeof

    return int(sum(sizeof(r.tracks) for r in results))
