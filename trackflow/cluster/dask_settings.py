"""The Dask settings trackflow chooses for the clusters it starts (``trackflow.dask`` in
``trackflow.yaml``): the workers' statistical profiler off (its history bounded when a user turns
it on), a failed task tried on one more worker only.

They are Dask's own keys (``distributed.worker.profile.cycle``, ...) with trackflow's values. A
key the user has set keeps the user's value, even when it equals Dask's default: one in a dask
config file or a ``DASK_DISTRIBUTED__...`` variable (``dask.config.collect()``), or one whose
value in force (``dask.config.set``) differs from distributed's shipped default.
:func:`applied` sets them while a local cluster starts (its scheduler and nannies read them
then, and each nanny hands them to the worker processes it starts and restarts);
:func:`job_exports` writes them as ``export DASK_...`` lines for Slurm jobs.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from typing import Any

import dask.config

from trackflow import config

_UNSET = object()


def _shipped_default(key: str) -> Any:
    """distributed's own default for ``key`` (its ``distributed.yaml``)."""
    import distributed  # noqa: F401  (loads distributed.yaml into dask.config's defaults)

    node: Any = sys.modules["distributed.config"].defaults
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def chosen() -> dict[str, Any]:
    """``{dotted dask key: trackflow's value}`` for each key of ``trackflow.dask`` the user has
    not set (its value in force is distributed's default, or it has none)."""
    import distributed  # noqa: F401

    users = dask.config.collect()  # the config files and the DASK_* environment, no defaults
    settings = {}
    for key, value in config.flatten(config.get("dask")).items():
        if dask.config.get(key, _UNSET, config=users) is not _UNSET:
            continue
        in_force = dask.config.get(key, None)
        if in_force is None or in_force == _shipped_default(key):
            settings[key] = value
    return settings


def applied() -> dask.config.set:
    """Context manager: :func:`chosen` in force (``with applied(): LocalCluster(...)``)."""
    return dask.config.set(chosen())


def job_exports() -> list[str]:
    """``export DASK_...=VALUE`` lines (a job script's prologue) for :func:`chosen`."""
    lines = []
    for key, value in chosen().items():
        name = "DASK_" + "__".join(part.upper().replace("-", "_") for part in key.split("."))
        text = value if isinstance(value, str) else repr(value)
        lines.append(f"export {name}={shlex.quote(str(text))}")
    return lines
