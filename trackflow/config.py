"""trackflow settings through ``dask.config`` (one YAML of defaults, overridable by file and env).

``get("pipeline.filter.cut")`` reads ``dask.config.get("trackflow.pipeline.filter.cut")``; users
override with dask's own config files or ``DASK_TRACKFLOW__...`` environment variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
import yaml

DEFAULTS_FILE = Path(__file__).with_name("trackflow.yaml")

with DEFAULTS_FILE.open() as _f:
    DEFAULTS: dict[str, Any] = yaml.safe_load(_f)

dask.config.update_defaults(DEFAULTS)

_MISSING = object()


def get(key: str, default: Any = _MISSING) -> Any:
    """Return the trackflow setting ``key`` (dotted, without the ``trackflow.`` prefix)."""
    full = f"trackflow.{key}"
    if default is _MISSING:
        return dask.config.get(full)
    return dask.config.get(full, default)


def set(**settings: Any) -> dask.config.set:
    """Context manager overriding settings: ``with trackflow.config.set(**{"threads": 2}):``."""
    return dask.config.set({f"trackflow.{k}": v for k, v in settings.items()})
