"""Training data: simulated events with truth turned into model inputs and truth labels.

Everything the models see comes from hits only (:func:`trackflow.pipeline.features.hit_features`);
truth is used for labels alone: the particle of each hit, its transverse momentum (GeV), and the
*truth edges* — consecutive hits along each particle, ordered by distance (mm) from the particle's
production vertex.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trackflow.errors import EventFileError
from trackflow.events import Event, list_events
from trackflow.pipeline.features import FeatureConfig, hit_features, hit_geometry


@dataclass
class TruthEvent:
    """One event ready for training: features from hits, labels from truth.

    ``particle_id`` int64 [N] (0 = noise); ``pt`` float32 [N]: transverse momentum (GeV) of the
    hit's particle (0 for noise); ``truth_edges`` int64 [2, T]: consecutive hits of every particle
    (inner, outer) as rows into the hits; ``truth_edge_pt`` float32 [T] (GeV).
    """

    event_id: int
    hit_ids: np.ndarray
    features: torch.Tensor
    particle_id: np.ndarray
    pt: np.ndarray
    truth_edges: np.ndarray
    truth_edge_pt: np.ndarray
    hits_per_particle: np.ndarray  # int64 [N]: hits of the hit's particle in this event (0 for noise)
    phi: np.ndarray  # float32 [N]: azimuth of the hit (rad), for splitting events into sectors
    layers: np.ndarray | None = None  # int64 [N]: layer key (volume_id * 100 + layer_id)
    cylindrical: np.ndarray | None = None  # float64 [N, 3]: r (mm), phi (rad), z (mm)
    # float32 [N]: distance (mm) of the hit's particle's production vertex from the beam line
    # (0 for noise and for particles missing from the particles file)
    vertex_r: np.ndarray | None = None

    @property
    def n_hits(self) -> int:
        return len(self.hit_ids)

    def truth_edges_above(self, pt_min: float) -> np.ndarray:
        """Truth edges [2, T'] of particles with pT > ``pt_min`` (GeV)."""
        return self.truth_edges[:, self.truth_edge_pt > pt_min]

    def same_particle(self, edges: np.ndarray) -> np.ndarray:
        """bool [E]: both ends on the same (non-noise) particle."""
        a, b = self.particle_id[edges[0]], self.particle_id[edges[1]]
        return (a == b) & (a != 0)


def truth_edges(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive hits of each particle as (edges int64 [2, T], pT float32 [T] GeV).

    Hits of one particle are ordered by distance (mm) from the particle's production vertex
    (from ``particles``; the origin when the particle is missing there), which follows the
    trajectory outwards for all but looping tracks.
    """
    if event.truth is None:
        raise EventFileError(
            event.source or Path(f"event {event.event_id}"), "has no truth file: cannot train"
        )
    truth = event.truth.set_index("hit_id").reindex(event.hits["hit_id"].to_numpy())
    pid = truth["particle_id"].fillna(0).to_numpy(np.int64)
    hits = event.hits
    xyz = hits[["x", "y", "z"]].to_numpy(np.float64)
    vertex = np.zeros_like(xyz)
    pt = np.zeros(len(hits), np.float32)
    known, rows = _particle_rows(event, pid)
    if rows is not None:
        vertex[known] = rows[["vx", "vy", "vz"]].to_numpy(np.float64)
        pt[known] = np.hypot(rows["px"].to_numpy(), rows["py"].to_numpy()).astype(np.float32)
    # particles missing from the particles file: pT from the truth momentum at the hit
    missing = (pt == 0) & (pid != 0)
    if missing.any():
        pt[missing] = np.hypot(truth["tpx"].to_numpy()[missing], truth["tpy"].to_numpy()[missing])
    distance = np.linalg.norm(xyz - vertex, axis=1)
    order = np.lexsort((distance, pid))  # by particle, then outwards
    real = pid[order] != 0
    order = order[real]
    same = pid[order[1:]] == pid[order[:-1]]
    edges = np.stack([order[:-1][same], order[1:][same]]).astype(np.int64)
    return edges, pt[edges[0]] if edges.size else np.zeros(0, np.float32)


def prepare_event(event: Event, features: FeatureConfig) -> TruthEvent:
    """Features (from hits only) and truth labels of one simulated event."""
    if event.truth is None:
        raise EventFileError(
            event.source or Path(f"event {event.event_id}"), "has no truth file: cannot train"
        )
    hit_ids = event.hits["hit_id"].to_numpy(np.int64)
    truth = event.truth.set_index("hit_id").reindex(hit_ids)
    pid = truth["particle_id"].fillna(0).to_numpy(np.int64)
    edges, edge_pt = truth_edges(event)
    pt = np.zeros(len(hit_ids), np.float32)
    if edges.size:
        pt[edges[0]] = edge_pt
        pt[edges[1]] = edge_pt
    _, inverse, counts = np.unique(pid, return_inverse=True, return_counts=True)
    per_particle = np.where(pid != 0, counts[inverse], 0).astype(np.int64)
    layers, cylindrical = hit_geometry(event.hits)
    return TruthEvent(
        event_id=event.event_id,
        hit_ids=hit_ids,
        features=hit_features(event.hits, features),
        particle_id=pid,
        pt=pt,
        truth_edges=edges,
        truth_edge_pt=edge_pt.astype(np.float32),
        hits_per_particle=per_particle,
        phi=np.arctan2(event.hits["y"].to_numpy(), event.hits["x"].to_numpy()).astype(np.float32),
        layers=layers,
        cylindrical=cylindrical,
        vertex_r=production_radius(event, pid),
    )


def production_radius(event: Event, particle_id: np.ndarray) -> np.ndarray:
    """float32 [N]: the transverse distance (mm) of each hit's particle's production vertex from
    the beam line; 0 for noise and particles missing from ``particles``. Secondaries (decays,
    conversions, hadronic interactions) start away from it, and every edge feature that assumes
    a track from the beam line (z0, a circle through the origin) reads them as fakes."""
    radius = np.zeros(len(particle_id), np.float32)
    known, rows = _particle_rows(event, particle_id)
    if rows is not None:
        radius[known] = np.hypot(rows["vx"].to_numpy(), rows["vy"].to_numpy())
    return radius


def _particle_rows(event: Event, particle_id: np.ndarray) -> tuple[np.ndarray, pd.DataFrame | None]:
    """(known bool [N], the ``particles`` rows of the known hits' particles in hit order); None
    when the event has no particles. Noise (id 0) is never known."""
    known = np.zeros(len(particle_id), bool)
    if event.particles is None or not len(event.particles):
        return known, None
    particles = event.particles.drop_duplicates("particle_id").set_index("particle_id")
    known = np.isin(particle_id, particles.index.to_numpy()) & (particle_id != 0)
    return known, particles.reindex(particle_id[known])


def load_truth_events(
    directory: Path,
    features: FeatureConfig,
    max_events: int | None = None,
    event_ids: Sequence[int] | None = None,
) -> list[TruthEvent]:
    """Read and prepare the simulated events of ``directory`` (sorted by event id)."""
    refs = list_events(directory, event_ids)
    if not refs:
        raise EventFileError(Path(directory), "holds no TrackML events")
    if max_events is not None:
        refs = refs[:max_events]
    return [prepare_event(ref.load(("hits", "truth", "particles")), features) for ref in refs]
