"""trackflow settings through ``dask.config`` (one YAML of defaults, overridable by file and env).

``get("pipeline.filter.cut")`` reads ``dask.config.get("trackflow.pipeline.filter.cut")``; users
override with dask's own config files, ``DASK_TRACKFLOW__...`` environment variables,
``dask.config.set`` / :func:`set`, or ``trackflow reconstruct --set KEY=VALUE``.

Every default lives in ``trackflow.yaml``: code reads a setting with :func:`get` (a dataclass field
with :func:`default`), never with a fallback literal that repeats the YAML's value. A setting that
is ``null`` is unset: :func:`get` gives None. Every pipeline-stage
setting (``pipeline.*``) ships ``null`` in ``trackflow.yaml``, so a value found there was put
there by the user — in a config file, the environment, ``dask.config.set`` or an edit of
``trackflow.yaml`` itself — and wins over the models' manifest even when it equals the built-in
default (:mod:`trackflow.pipeline.settings` resolves the precedence).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dask.config
import yaml

from trackflow.errors import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("trackflow.yaml")

with DEFAULTS_FILE.open() as _f:
    DEFAULTS: dict[str, Any] = yaml.safe_load(_f)

dask.config.update_defaults(DEFAULTS)

_MISSING = object()


def get(key: str, default: Any = _MISSING) -> Any:
    """Return the trackflow setting ``key`` (dotted, without the ``trackflow.`` prefix).

    With ``default``: that value when the setting is missing or ``null`` (unset).
    """
    full = f"trackflow.{key}"
    if default is _MISSING:
        return dask.config.get(full)
    value = dask.config.get(full, None)
    return default if value is None else value


def default(key: str) -> Callable[[], Any]:
    """A dataclass field's ``default_factory``: the setting ``key`` when the object is made, so
    the default lives in ``trackflow.yaml`` only:
    ``repeats: int = field(default_factory=config.default("bench.repeats"))``."""
    return functools.partial(get, key)


def set(**settings: Any) -> dask.config.set:
    """Context manager overriding settings: ``with trackflow.config.set(**{"threads": 2}):``."""
    return dask.config.set({f"trackflow.{k}": v for k, v in settings.items()})


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1, "c": {}}}`` -> ``{"a.b": 1, "a.c": {}}``: every leaf of a nested mapping
    under its dotted key (an empty mapping is a leaf)."""
    leaves: dict[str, Any] = {}
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            leaves.update(flatten(value, f"{key}."))
        else:
            leaves[key] = value
    return leaves


def known_keys() -> frozenset[str]:
    """Every setting of ``trackflow.yaml``, dotted (``pipeline.graph_building.radius``, ...)."""
    return frozenset(flatten(DEFAULTS["trackflow"]))


def parse_assignments(assignments: Iterable[str]) -> dict[str, Any]:
    """``["pipeline.filter.cut=0.3", ...]`` -> ``{"pipeline.filter.cut": 0.3, ...}``.

    Values are read as YAML scalars (``0.3`` a float, ``64`` an int, ``true`` a bool, ``null``
    unset, anything else a string). Raises ConfigError naming the assignment when it is not
    ``KEY=VALUE`` or when KEY is not a setting of ``trackflow.yaml``.
    """
    known = known_keys()
    settings: dict[str, Any] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. pipeline.graph_building.radius=0.09")
        if key.startswith("trackflow."):
            key = key[len("trackflow.") :]
        if key not in known:
            parent = key.rpartition(".")[0]
            near = sorted(k for k in known if k.startswith(f"{parent}.")) if parent else []
            hint = f"; {parent} has {', '.join(k.rpartition('.')[2] for k in near)}" if near else ""
            raise ConfigError(f"--set {key}: unknown setting (not in {DEFAULTS_FILE.name}){hint}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: value {raw!r} is not a YAML scalar") from err
        if isinstance(value, (dict, list)):
            raise ConfigError(f"--set {key}: value {raw!r} must be a scalar (number, string, true/false)")
        settings[key] = value
    return settings
