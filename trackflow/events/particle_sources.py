"""Where a simulated event's particles come from when they are real: a TrackML particles file
turned into ACTS's particle CSV (charged pions, rotated in phi), and its primary vertices kept,
moved or thinned to set the beam conditions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["TRACKML_VERTEX_SHIFT", "move_vertices", "trackml_to_acts_particles", "vertex_index"]

PION_MASS_GEV = 0.13957039
PION_PDG = 211
#: bits of a real TrackML particle_id below its vertex index (``particle_id >> 52``)
TRACKML_VERTEX_SHIFT = 52
#: half length of the tracker (mm, the outer strip endcaps end at |z| = 2955 mm)
TRACKER_HALF_LENGTH_MM = 2960.0


def trackml_to_acts_particles(particles: pd.DataFrame, rotation: float = 0.0) -> pd.DataFrame:
    """TrackML particles -> ACTS particle CSV frame (charged pions; vertices numbered in order).

    ``rotation`` (rad) turns positions and momenta about the beam (z) axis.
    """
    charged = particles[particles["q"] != 0]
    vertex = charged.groupby(["vx", "vy", "vz"], sort=False).ngroup().to_numpy() + 1
    cos, sin = math.cos(rotation), math.sin(rotation)
    vx, vy = charged["vx"].to_numpy(np.float64), charged["vy"].to_numpy(np.float64)
    px, py = charged["px"].to_numpy(np.float64), charged["py"].to_numpy(np.float64)
    q = np.sign(charged["q"].to_numpy()).astype(np.int64)
    return pd.DataFrame(
        {
            "particle_id_pv": vertex,
            "particle_id_sv": 0,
            "particle_id_part": pd.Series(vertex).groupby(vertex).cumcount().to_numpy() + 1,
            "particle_id_gen": 0,
            "particle_id_subpart": 0,
            "particle_type": PION_PDG * q,
            "process": 0,
            "vx": cos * vx - sin * vy,
            "vy": sin * vx + cos * vy,
            "vz": charged["vz"].to_numpy(np.float64),
            "vt": 0.0,
            "px": cos * px - sin * py,
            "py": sin * px + cos * py,
            "pz": charged["pz"].to_numpy(np.float64),
            "m": PION_MASS_GEV,
            "q": q,
        }
    )


def vertex_index(particles: pd.DataFrame) -> np.ndarray:
    """The primary-vertex index of each particle of a TrackML particles frame.

    Real TrackML ids carry it in their top bits (``particle_id >> 52``), which keeps secondaries
    with their primary vertex; without ``particle_id``, particles sharing (vx, vy, vz) are one.
    """
    if "particle_id" in particles.columns:
        return (particles["particle_id"].to_numpy(np.int64) >> TRACKML_VERTEX_SHIFT).astype(np.int64)
    return particles.groupby(["vx", "vy", "vz"], sort=False).ngroup().to_numpy(np.int64)


def move_vertices(
    particles: pd.DataFrame,
    rng: np.random.Generator,
    sigma_z: float | None = None,
    sigma_xy: float | None = None,
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0),
    fraction: float = 1.0,
    flat_z: float | None = None,
) -> pd.DataFrame:
    """Real kinematics under another beam spot or pileup: whole vertices moved, or dropped.

    Each primary vertex (:func:`vertex_index`) is kept with probability ``fraction`` (at least
    one is kept). With ``sigma_z`` (mm) its z is drawn anew from N(0, sigma_z); with ``sigma_xy``
    its x and y from N(0, sigma_xy); with ``flat_z`` its z uniformly in ±flat_z (mm) instead;
    then every vertex moves by ``shift`` (mm, x, y, z). All
    particles of a vertex, secondaries included, move by the same offset, so tracks stay what they
    were, only displaced. A vertex's position is that of its particle closest to the beam line
    (the prompt vertex). Momenta are untouched.
    """
    index = vertex_index(particles)
    vertices, inverse = np.unique(index, return_inverse=True)
    keep = rng.random(len(vertices)) < fraction
    if not keep.any():
        keep[rng.integers(len(vertices))] = True
    position = particles[["vx", "vy", "vz"]].to_numpy(np.float64)
    # the prompt particle of each vertex: the one nearest the beam line
    order = np.lexsort((np.hypot(position[:, 0], position[:, 1]), inverse))
    first = order[np.searchsorted(inverse[order], np.arange(len(vertices)))]
    origin = position[first]
    target = origin.copy()
    if sigma_xy is not None:
        target[:, 0] = rng.normal(0.0, sigma_xy, len(vertices)) if sigma_xy > 0 else 0.0
        target[:, 1] = rng.normal(0.0, sigma_xy, len(vertices)) if sigma_xy > 0 else 0.0
    if sigma_z is not None:
        target[:, 2] = rng.normal(0.0, sigma_z, len(vertices)) if sigma_z > 0 else 0.0
    elif flat_z is not None:
        target[:, 2] = rng.uniform(-flat_z, flat_z, len(vertices))
    offsets = target - origin + np.asarray(shift, dtype=np.float64)
    new_position = position + offsets[inverse]
    # a secondary pushed out of the detector has nowhere to start in ACTS's geometry (and would
    # leave no hit): it goes
    inside = np.abs(new_position[:, 2]) <= TRACKER_HALF_LENGTH_MM
    selected = keep[inverse] & inside
    moved = particles[selected].copy()
    for axis, column in enumerate(("vx", "vy", "vz")):
        moved[column] = new_position[selected, axis]
    out: pd.DataFrame = moved.reset_index(drop=True)
    return out
