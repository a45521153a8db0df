"""The Slurm queue, as trackflow asks it: the jobs of a run (by job name), their states, and
cancelling them. A leaf: both the cluster handle (:mod:`trackflow.cluster.handle`, its
``job_ids``) and the Slurm cluster (:mod:`trackflow.cluster.slurm`) use it. Each call runs one
Slurm command with a 30 s timeout; nothing runs at import time.
"""

from __future__ import annotations

import subprocess
import time

__all__ = ["cancel_jobs", "squeue_ids", "squeue_states"]


def squeue_ids(job_name: str) -> list[str]:
    """Ids of queued/running jobs called ``job_name`` (squeue's default states; no completed)."""
    done = subprocess.run(
        ["squeue", "-h", "-n", job_name, "-o", "%i"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.split() if done.returncode == 0 else []


def squeue_states(job_name: str) -> str:
    """One line per job of the run: id, state and Slurm's reason (for error messages)."""
    done = subprocess.run(
        ["squeue", "-h", "-n", job_name, "-o", "%i %T %r"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "; ".join(done.stdout.split("\n")[:-1]) or "no job in squeue"


def cancel_jobs(job_name: str, timeout: float = 30.0) -> list[str]:
    """``scancel`` every job called ``job_name`` and wait until squeue shows none of them.

    Returns the ids that had to be cancelled (an empty list after a clean close).
    """
    leftover = squeue_ids(job_name)
    if leftover:
        subprocess.run(["scancel", *leftover], capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + timeout
    while squeue_ids(job_name) and time.monotonic() < deadline:
        time.sleep(0.5)
    return leftover
