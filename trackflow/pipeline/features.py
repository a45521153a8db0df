"""Hit features for the models: from hits only (never truth), the same for simulated and real hits.

The base features are those of the Exa.TrkX recipe (REFERENCE.md §2): r/1000 (mm), phi/pi,
z/1000 (mm), scales from ``trackflow.config.get("pipeline.feature_scale")``. Optional extras are
detector-agnostic in the sense that they depend only on the hit position (``eta``) or on the
volume/layer ids, which ACTS's Generic Detector and the TrackML detector share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

import trackflow.config
from trackflow.errors import ConfigError
from trackflow.events.event import VOLUME_IDS

BASE_FEATURES: tuple[str, ...] = ("r", "phi", "z")
# name -> number of columns it contributes
KNOWN_FEATURES: dict[str, int] = {
    "r": 1,
    "phi": 1,
    "z": 1,
    "eta": 1,
    "cos_phi": 1,
    "sin_phi": 1,
    "volume": len(VOLUME_IDS),
}
ETA_SCALE = 4.0  # |eta| of TrackML hits stays below ~4


def _default_scale() -> dict[str, float]:
    scale = trackflow.config.get("pipeline.feature_scale", None) or {}
    user = {k: float(v) for k, v in scale.items() if v is not None}  # null = unset
    return {"r": 1000.0, "phi": float(np.pi), "z": 1000.0} | user


@dataclass
class FeatureConfig:
    """Which features, in which order, and the scale of each (r and z in mm, phi in rad).

    ``names``: a sequence drawn from ``r, phi, z, eta, cos_phi, sin_phi, volume``
    (``volume`` is a 9-column one-hot
    of the TrackML volume id). The column count is ``n_features``.
    """

    names: tuple[str, ...] = BASE_FEATURES
    scale: dict[str, float] = field(default_factory=_default_scale)

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self.scale = _default_scale() | {k: float(v) for k, v in self.scale.items()}
        unknown = [n for n in self.names if n not in KNOWN_FEATURES]
        if unknown:
            raise ConfigError(
                f"pipeline features: unknown feature(s) {unknown}; known: {sorted(KNOWN_FEATURES)}"
            )

    @property
    def n_features(self) -> int:
        return sum(KNOWN_FEATURES[n] for n in self.names)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "scale": dict(self.scale)}

    @classmethod
    def from_dict(cls, spec: dict | None) -> FeatureConfig:
        if not spec:
            return cls()
        names = tuple(spec.get("names", BASE_FEATURES))
        return cls(names=names, scale=_default_scale() | spec.get("scale", {}))


def _column(hits: pd.DataFrame, name: str) -> np.ndarray:
    if name in hits:
        return hits[name].to_numpy(np.float64)
    x = hits["x"].to_numpy(np.float64)
    y = hits["y"].to_numpy(np.float64)
    if name == "r":
        return np.hypot(x, y)
    if name == "phi":
        return np.arctan2(y, x)
    if name == "eta":
        r = np.hypot(x, y)
        z = hits["z"].to_numpy(np.float64)
        return np.arcsinh(np.divide(z, r, out=np.zeros_like(z), where=r > 0))
    raise KeyError(name)


def hit_features(hits: pd.DataFrame, config: FeatureConfig | None = None) -> torch.Tensor:
    """Model inputs float32 [N, F] for a hits frame (TrackML columns: x, y, z mm, volume_id, ...).

    Reads only positions and volume ids, so truth never leaks in. Derived r/phi/eta columns are
    used when present, else computed from x, y, z.
    """
    config = config or FeatureConfig()
    columns: list[np.ndarray] = []
    for name in config.names:
        if name in ("r", "phi", "z"):
            columns.append(_column(hits, name)[:, None] / config.scale[name])
        elif name == "eta":
            columns.append(_column(hits, "eta")[:, None] / config.scale.get("eta", ETA_SCALE))
        elif name in ("cos_phi", "sin_phi"):
            # continuous across phi = ±pi, where phi/pi jumps from +1 to -1
            phi = _column(hits, "phi")[:, None]
            columns.append(np.cos(phi) if name == "cos_phi" else np.sin(phi))
        elif name == "volume":
            volume = hits["volume_id"].to_numpy()
            columns.append((volume[:, None] == np.asarray(VOLUME_IDS)[None, :]).astype(np.float64))
    stacked = np.concatenate(columns, axis=1) if columns else np.zeros((len(hits), 0))
    return torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32))


def hit_geometry(hits: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray]:
    """(layer keys int64 [N] or None, cylindrical float64 [N, 3]: r mm, phi rad, z mm) of hits.

    What the layer map's graph building reads (:mod:`trackflow.pipeline.layer_map`); the layer
    keys need ``volume_id`` and ``layer_id`` (None without them).
    """
    from trackflow.pipeline.layer_map import layer_keys

    cylindrical = np.stack([_column(hits, "r"), _column(hits, "phi"), hits["z"].to_numpy(np.float64)], axis=1)
    layers = (
        layer_keys(hits["volume_id"].to_numpy(), hits["layer_id"].to_numpy())
        if {"volume_id", "layer_id"} <= set(hits.columns)
        else None
    )
    return layers, cylindrical


def feature_names(names: Sequence[str]) -> list[str]:
    """Column names of ``hit_features`` output (``volume`` expands to ``volume_7`` ...)."""
    out: list[str] = []
    for n in names:
        out.extend([f"volume_{v}" for v in VOLUME_IDS] if n == "volume" else [n])
    return out
