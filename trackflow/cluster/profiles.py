"""Slurm worker-job profiles in dask-jobqueue's conventions, shipped as package data.

``jobqueue.yaml`` beside this module holds the ``cpu`` and ``gpu`` profiles. :func:`load_profiles`
puts it into dask.config as defaults, as dask-jobqueue does with its own ``jobqueue.yaml``: the
user's dask config (``~/.config/dask/*.yaml``, ``DASK_JOBQUEUE__CPU__MEMORY=8GiB``) overrides
single keys, and a ``--profile FILE`` merges on top for one cluster.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import dask.config
import yaml

from trackflow import config
from trackflow.cluster.resources import GPU_RESOURCE
from trackflow.errors import ConfigError

#: The profiles shipped with the package (package data: a wheel install has them too).
JOBQUEUE_FILE = Path(__file__).with_name("jobqueue.yaml")
#: ``--cluster`` names that map onto profiles.
SLURM_SPECS = {"slurm-cpu": "cpu", "slurm-gpu": "gpu", "slurm-mixed": "cpu"}


_LOADED_DEFAULTS: set[Path] = set()


def load_profiles(profile_file: Path | None = None) -> dict[str, Any]:
    """Put the shipped ``jobqueue.yaml`` into dask.config as defaults (user config keeps precedence) and
    return the settings of ``profile_file`` for ``dask.config.set`` (empty without one).

    A profile in ``profile_file`` that dask-jobqueue does not know yet gets the keys it leaves out
    from ``jobqueue.slurm`` (dask-jobqueue reads named sections only).
    """
    import dask_jobqueue  # noqa: F401 - registers jobqueue.slurm defaults in dask.config

    shipped = Path(config.get("workflow.cluster.jobqueue_file") or JOBQUEUE_FILE)
    if shipped not in _LOADED_DEFAULTS and shipped.is_file():
        dask.config.update_defaults(_read_profiles(shipped))
        _LOADED_DEFAULTS.add(shipped)  # once: update_defaults appends to dask's list each call
    if profile_file is None:
        return {}
    overrides = _read_profiles(Path(profile_file).expanduser())
    base = dask.config.get("jobqueue.slurm")
    settings: dict[str, Any] = {}
    for name, section in overrides["jobqueue"].items():
        known = dask.config.get(f"jobqueue.{name}", None)
        merged = copy.deepcopy(base if known is None else known)
        # dask's own merge: 'worker_extra_args' meets 'worker-extra-args' as dask.config does
        dask.config.update(merged, section or {})
        settings[f"jobqueue.{name}"] = merged
    return settings


def _read_profiles(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read profiles ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobqueue"), dict):
        raise ConfigError(f"{path}: a profiles file needs a top-level 'jobqueue:' mapping")
    return data


def profile_settings(profile: str) -> dict[str, Any]:
    """The dask-jobqueue settings of ``profile`` (after :func:`load_profiles`)."""
    settings = dask.config.get(f"jobqueue.{profile}", None)
    if not isinstance(settings, dict) or "cores" not in settings:
        known = sorted(
            name
            for name, value in dask.config.get("jobqueue", {}).items()
            if isinstance(value, dict) and "cores" in value and name not in _SCHEDULER_NAMES
        )
        raise ConfigError(
            f"cluster {profile}: no such Slurm profile (known: {', '.join(known)}; "
            f"add it to {JOBQUEUE_FILE} or give a profile file)"
        )
    return settings


# dask-jobqueue's own sections, which are not trackflow profiles
_SCHEDULER_NAMES = {"slurm", "pbs", "sge", "lsf", "oar", "htcondor", "moab", "local"}


def setting(settings: dict[str, Any], key: str, default: Any = None) -> Any:
    """``settings[key]`` with dask's spelling tolerance (``worker-extra-args`` or
    ``worker_extra_args``); ``default`` when missing or null."""
    for spelling in (key, key.replace("-", "_")):
        if settings.get(spelling) is not None:
            return settings[spelling]
    return default


def is_gpu_profile(settings: dict[str, Any]) -> bool:
    """True when the profile's workers get the Dask resource ``GPU`` (``--resources GPU=n``)."""
    args = [str(a) for a in setting(settings, "worker-extra-args") or []]
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--resources=") else None
        if arg == "--resources" and i + 1 < len(args):
            value = args[i + 1]
        if value and re.search(rf"(^|[\s,]){GPU_RESOURCE}=", value):
            return True
    return False
