"""The per-hit weights of the TrackML challenge's score, computed for simulated truth (the
accuracy phase's definition: hit order along the track times the particle's pT weight)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

__all__ = ["pt_weight", "trackml_weights"]

#: the challenge's weight profile along a track, from the vertex out, stretched over its hits
ORDER_PROPOSAL = np.array([10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0])
ORDER_MIN_HITS = 4
ORDER_MAX_HITS = 20


@functools.cache
def _order_weights() -> np.ndarray:
    """[nhits, ihit] weight of the ihit-th hit (from the vertex) of a track with nhits hits."""
    table = np.zeros((ORDER_MAX_HITS + 1, ORDER_MAX_HITS))
    for nhits in range(ORDER_MIN_HITS, ORDER_MAX_HITS + 1):
        support = np.linspace(0.0, nhits - 1, len(ORDER_PROPOSAL))
        weights = np.interp(np.arange(nhits), support, ORDER_PROPOSAL)
        table[nhits, :nhits] = weights / weights.sum()
    return table


def pt_weight(pt: np.ndarray) -> np.ndarray:
    """TrackML pT weight: 0.2 up to 0.5 GeV, rising linearly to 1 at 3 GeV, 1 above; 0 below 0.05."""
    weight: np.ndarray = np.interp(pt, [0.05, 0.5, 3.0], [0.2, 0.2, 1.0], left=0.0, right=1.0)
    return weight


def trackml_weights(truth: pd.DataFrame, particles: pd.DataFrame) -> np.ndarray:
    """Per-hit weights as the TrackML challenge defined them (accuracy phase), summing to 1.

    A hit's weight is ``w_order * w_pt`` normalised over the event. ``w_order``: the hits of a
    particle ranked by |tz - vz| (distance along z from its vertex) get the challenge's profile
    10, 8, 6, 5, 3, 3, 3, 5, 6 stretched over the track and normalised per track, so the first
    and last hits count most; tracks with more than 20 hits use the 20-hit profile and hits past
    the 20th weigh 0. ``w_pt``: :func:`pt_weight` of the particle. Noise (particle_id 0) and
    particles with < 4 hits weigh 0. (Reference: the challenge's ``trackml.weights`` module and
    Amrouche et al., arXiv:1904.06778.)
    """
    particle_ids = truth["particle_id"].to_numpy(np.int64)
    info = particles.set_index("particle_id")
    signal = particle_ids != 0
    pt = np.zeros(len(truth))
    vz = np.zeros(len(truth))
    particle_pt = pd.Series(np.hypot(info["px"].to_numpy(), info["py"].to_numpy()), index=info.index)
    pt[signal] = particle_pt.reindex(particle_ids[signal]).to_numpy()
    vz[signal] = info["vz"].reindex(particle_ids[signal]).to_numpy()
    distance = np.abs(truth["tz"].to_numpy(np.float64) - vz)
    order = np.lexsort((distance, particle_ids))
    sorted_ids = particle_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    counts = np.diff(np.r_[starts, len(sorted_ids)])
    ihit = np.empty(len(truth), np.int64)
    nhits = np.empty(len(truth), np.int64)
    ihit[order] = np.arange(len(sorted_ids)) - np.repeat(starts, counts)
    nhits[order] = np.repeat(counts, counts)
    table = _order_weights()
    w_order = np.where(
        signal & (nhits >= ORDER_MIN_HITS) & (ihit < ORDER_MAX_HITS),
        table[np.minimum(nhits, ORDER_MAX_HITS), np.minimum(ihit, ORDER_MAX_HITS - 1)],
        0.0,
    )
    weights = w_order * np.where(signal, pt_weight(np.nan_to_num(pt)), 0.0)
    total = weights.sum()
    return weights / total if total > 0 else weights
