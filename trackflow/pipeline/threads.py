"""The one place that sets how many threads the pipeline's libraries use.

torch (intra-op and inter-op pools), FAISS's OpenMP pool, and the OMP/MKL/OpenBLAS environment
variables (read by libraries loaded later and by child processes) all follow one number, so a
worker with ``threads=n`` never runs more than about n busy threads: the study saw FAISS's OpenMP
threads clash with the caller's (REFERENCE.md §1).
"""

from __future__ import annotations

import contextlib
import os

import torch

from trackflow.errors import ConfigError

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def set_threads(n: int) -> int:
    """Use ``n`` threads (>= 1) in torch, FAISS and OpenMP/BLAS from now on; returns ``n``.

    torch's inter-op pool can be sized only before its first use; later calls leave it as it is
    (it only runs independent ops in parallel, which the pipeline does not ask for).
    """
    n = int(n)
    if n < 1:
        raise ConfigError(f"threads: must be >= 1, got {n}")
    for var in ENV_VARS:
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        with contextlib.suppress(RuntimeError):  # already started; see docstring
            torch.set_num_interop_threads(n)
    try:
        import faiss
    except ImportError:  # FAISS is needed only by the faiss graph-building backend
        return n
    faiss.omp_set_num_threads(n)
    return n


def current_threads() -> dict[str, int | str | None]:
    """What each pool is set to now (for reports and the oversubscription benchmark)."""
    out: dict[str, int | str | None] = {
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
    }
    try:
        import faiss

        out["faiss_omp"] = faiss.omp_get_max_threads()
    except ImportError:
        out["faiss_omp"] = None
    out |= {var: os.environ.get(var) for var in ENV_VARS}
    return out
