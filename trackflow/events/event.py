"""The event structure shared by every room: hits, and when present cells, truth and particles."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# TrackML volume ids: pixel (-endcap, barrel, +endcap), short strip, long strip
PIXEL_VOLUMES = (7, 8, 9)
SHORT_STRIP_VOLUMES = (12, 13, 14)
LONG_STRIP_VOLUMES = (16, 17, 18)
VOLUME_IDS = PIXEL_VOLUMES + SHORT_STRIP_VOLUMES + LONG_STRIP_VOLUMES


def with_derived(hits: pd.DataFrame) -> pd.DataFrame:
    """Add cylindrical coordinates to a hits frame.

    r (mm) = sqrt(x² + y²), phi (rad) in (-pi, pi], eta = -ln tan(theta/2) with theta the polar
    angle of the hit seen from the origin. Returns a new frame; the input is left alone.
    """
    x = hits["x"].to_numpy(np.float64)
    y = hits["y"].to_numpy(np.float64)
    z = hits["z"].to_numpy(np.float64)
    r = np.hypot(x, y)
    out = hits.copy()
    out["r"] = r.astype(np.float32)
    out["phi"] = np.arctan2(y, x).astype(np.float32)
    out["eta"] = np.arcsinh(np.divide(z, r, out=np.zeros_like(z), where=r > 0)).astype(np.float32)
    return out


@dataclass
class Event:
    """One collision event in TrackML form.

    ``hits``: hit_id (int64), x, y, z (float32, mm), volume_id, layer_id, module_id (int32), and the
    derived r (mm), phi (rad), eta. ``cells``: hit_id, ch0, ch1, value. ``truth``: hit_id,
    particle_id (0 = noise), tx, ty, tz (mm), tpx, tpy, tpz (GeV), weight. ``particles``:
    particle_id, vx, vy, vz (mm), px, py, pz (GeV), q, nhits.
    """

    event_id: int
    hits: pd.DataFrame
    cells: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    particles: pd.DataFrame | None = None
    source: Path | None = field(default=None, compare=False)

    @property
    def n_hits(self) -> int:
        return len(self.hits)

    @property
    def has_truth(self) -> bool:
        return self.truth is not None

    def noise_fraction(self) -> float | None:
        """Fraction of hits that belong to no particle (needs truth; else from particles' nhits)."""
        if self.truth is not None:
            return float((self.truth["particle_id"] == 0).mean()) if len(self.truth) else 0.0
        if self.particles is not None and "nhits" in self.particles:
            return float(1.0 - self.particles["nhits"].sum() / max(self.n_hits, 1))
        return None

    def hits_per_volume(self) -> dict[int, int]:
        counts = self.hits["volume_id"].value_counts().sort_index()
        return {int(k): int(v) for k, v in zip(counts.index, counts.to_numpy(), strict=True)}

    def particle_pt(self) -> pd.Series:
        """Transverse momentum (GeV) per particle_id, from particles."""
        if self.particles is None:
            raise ValueError(f"event {self.event_id} has no particles")
        p = self.particles
        pt = np.hypot(p["px"].to_numpy(), p["py"].to_numpy())
        return pd.Series(pt, index=p["particle_id"].to_numpy())

    def hits_only(self) -> Event:
        """The event as a reconstruction job may see it: hits (and cells), never truth."""
        return Event(self.event_id, self.hits, cells=self.cells, source=self.source)
