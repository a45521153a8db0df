"""Triplet agreement: does an edge continue one of its neighbours as a single helix would?

A pair of hits says little on its own: in the pixel barrel, a true edge has about fifteen fake
companions that fit the layer map's windows as well as it does, and the GNN, which sums the
messages of about eight of them into each hit, cannot pick the one that agrees. Two edges that
share a hit can: in a 2 T field a particle's helix has one transverse curvature and one
longitudinal slope, and consecutive segments of it agree on both up to multiple scattering.

Each edge (hits ordered outwards by r) gives

- ``rho`` (1/m): the signed curvature of the circle through the beam line (the origin of the
  transverse plane) and the edge's two hits, ``2 sin(dphi) / chord``; pT = 0.3 B / rho,
  so 0.6 / rho GeV in 2 T;
- ``cot`` (dimensionless): cot(theta) = dz / ds, with ds the arc length of that circle between
  the two hits (the chord for straight tracks) -- exact for a helix from the beam line, where
  dz / dr is not at low pT.

A *triplet* is two edges sharing a hit that is the outer hit of one and the inner of the other.
Its agreement is ``chi2 = (d rho / s_rho)^2 + (d cot / s_cot)^2``, with the scales learned from
simulation truth (:meth:`TripletScales.from_truth`) per layer of the shared hit and per bin of
|rho| (pT-aware: multiple scattering grows as 1/p). An edge's *best chi2* is its smallest over
every triplet it belongs to (+inf when it has none). :func:`prune` drops the edges of the chosen
volumes whose best chi2 exceeds the cut.

Edges whose hits are less than ``min_dr`` (mm) apart in r (overlapping modules of one layer,
endcap disks) give neither quantity reliably: they are never pruned and never vouch for another
edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from trackflow.errors import ConfigError
from trackflow.pipeline.layer_map import LAYER_KEY_BASE, wrap_angle

#: |rho| bin edges (1/m) of the learned scales; pT = 0.6 / rho GeV: > 4, 2-4, 1-2, 0.67-1,
#: 0.5-0.67, 0.3-0.5, below 0.3 GeV
CURVATURE_BINS: tuple[float, ...] = (0.0, 0.15, 0.3, 0.6, 0.9, 1.2, 2.0, np.inf)
#: the two residuals of a triplet, in the order of the scales' last axis
QUANTITIES = ("rho", "cot")
#: a volume's cut when training gives none; and the cap on a learned one
DEFAULT_CHI2_CUT = 25.0
MAX_CHI2_CUT = 1000.0
#: the GNN's edge inputs of :meth:`TripletScales.agreement`, in order
AGREEMENT_FEATURES = ("log_chi2_inner", "no_inner", "log_chi2_outer", "no_outer")
# the agreement looks for triplets within the curvature window of this chi2, whatever the pruning
# cut: a GNN's inputs must not change when a user loosens pruning (the shipped cut is 9)
AGREEMENT_WINDOW_CHI2 = 9.0
# chi2 above this reads as this in the agreement inputs (log1p(1000) / 7 ~ 1: inputs of order 1)
AGREEMENT_CHI2_CAP = 1000.0
#: GeV: triplets are looked for within the curvature window of particles above this pT (at 0.3
#: GeV, rho = 2 / m); slower particles' triplets that differ more are not sought
WINDOW_PT_MIN = 0.3
# |rho| (1/m) bound of the sorted search's key: an edge >= 1 mm long bends at most 2000 / m
_RHO_SPAN = 4000.0
# a layer needs this many truth triplets in a bin for a scale of its own (else its volume's)
_MIN_TRIPLETS = 40
# largest triplet count held at once (bounded memory: ~8 float64/int64 arrays of this length)
_BLOCK = 1 << 22


@dataclass(frozen=True)
class EdgeHelix:
    """Per edge, ordered outwards: ``inner``, ``outer`` hit rows int64 [E]; ``rho`` (1/m) and
    ``cot`` float64 [E]; ``usable`` bool [E]: the hits are at least ``min_dr`` mm apart in r."""

    inner: np.ndarray
    outer: np.ndarray
    rho: np.ndarray
    cot: np.ndarray
    usable: np.ndarray


def edge_helix(cylindrical: np.ndarray, edges: np.ndarray, min_dr: float) -> EdgeHelix:
    """The helix parameters of every edge (module docstring). ``cylindrical`` float [N, 3]:
    r (mm), phi (rad), z (mm); ``edges`` int [2, E] in either direction."""
    r, phi, z = (np.asarray(cylindrical[:, i], np.float64) for i in range(3))
    a, b = np.asarray(edges[0], np.int64), np.asarray(edges[1], np.int64)
    swap = r[a] > r[b]
    inner, outer = np.where(swap, b, a), np.where(swap, a, b)
    dphi = wrap_angle(phi[outer] - phi[inner])
    r_in, r_out = r[inner], r[outer]
    chord = np.sqrt(np.maximum(r_in**2 + r_out**2 - 2.0 * r_in * r_out * np.cos(dphi), 1e-12))  # mm
    rho = 2000.0 * np.sin(dphi) / chord  # 1/m
    half_angle = np.arcsin(np.clip(np.abs(rho) * chord / 2000.0, 0.0, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        arc = np.where(np.abs(rho) > 1e-9, 2000.0 * half_angle / np.abs(rho), chord)  # mm
    cot = (z[outer] - z[inner]) / np.maximum(arc, 1e-3)
    usable = (r_out - r_in) >= min_dr
    return EdgeHelix(inner, outer, rho, cot, usable)


def junctions(layers: np.ndarray, helix: EdgeHelix, n_hits: int) -> np.ndarray:
    """int64 [N]: the junction of each hit, where two edges may meet to form a triplet.

    A hit is its own junction, except that hits joined by a short edge (under ``min_dr``) on
    one layer -- overlapping modules, which a track crosses in turn -- share one: a track's
    edge into the first and its edge out of the second then still form a triplet.
    """
    short = ~helix.usable & (layers[helix.inner] == layers[helix.outer])
    if not short.any():
        return np.arange(n_hits, dtype=np.int64)
    graph = coo_matrix(
        (np.ones(int(short.sum()), np.int8), (helix.inner[short], helix.outer[short])), shape=(n_hits, n_hits)
    )
    return connected_components(graph, directed=False)[1].astype(np.int64)


def triplet_pairs(
    helix: EdgeHelix,
    junction: np.ndarray,
    middles: np.ndarray | None = None,
    rho_window: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) int64 [T]: pairs of usable edges where the first's outer hit and the
    second's inner hit share a junction (:func:`junctions`); ``middles`` bool [junctions]: only
    at these junctions (None: at every one); ``rho_window`` float [junctions] (1/m): only pairs
    whose curvatures differ by at most this (None: any), found by a sorted search, so that a
    junction's pairs cost what agrees rather than in-edges times out-edges."""
    usable = np.flatnonzero(helix.usable)
    end = junction[helix.outer[usable]]
    into = usable if middles is None else usable[middles[end]]
    out_of = usable
    # out-edges sorted by (junction of their inner hit, curvature): one float key, exact because
    # |rho| of an edge >= min_dr long is at most 2000 / min_dr and the window is bounded below
    rho_in = np.clip(helix.rho[into], -_RHO_SPAN, _RHO_SPAN) + _RHO_SPAN
    rho_out = np.clip(helix.rho[out_of], -_RHO_SPAN, _RHO_SPAN) + _RHO_SPAN
    key_out = junction[helix.inner[out_of]] * (5.0 * _RHO_SPAN) + rho_out
    # any sort will do (ties give the same set of pairs); numpy's default is ~1.5x the stable one
    order = np.argsort(key_out)
    out_of, key_out = out_of[order], key_out[order]
    middle = junction[helix.outer[into]]
    if rho_window is None:
        width = np.full(len(into), 2.0 * _RHO_SPAN)
    else:
        width = np.minimum(rho_window[middle], 2.0 * _RHO_SPAN)
    key_in = middle * (5.0 * _RHO_SPAN) + rho_in
    # in-edges in key order too: a sorted search with sorted needles walks the table once
    # (~10x faster than a million random look-ups); pairs come out in another order, the same set
    by_key = np.argsort(key_in)
    into, key_in, width = into[by_key], key_in[by_key], width[by_key]
    lo = np.searchsorted(key_out, key_in - width, side="left")
    hi = np.searchsorted(key_out, key_in + width, side="right")
    n_per = hi - lo
    total = int(n_per.sum())
    first = np.repeat(into, n_per)
    offsets = np.arange(total) - np.repeat(np.cumsum(n_per) - n_per, n_per)
    second = out_of[np.repeat(lo, n_per) + offsets]
    return first, second


@dataclass(frozen=True)
class TripletScales:
    """Learned scales of a triplet's residuals, and the cuts on an edge's best chi2.

    ``layers`` int64 [L]: layer keys (``volume_id * 100 + layer_id``) of the shared hit, sorted;
    ``curvature_bins`` float [B + 1]: |rho| bin edges (1/m); ``sigma`` float [L, B, 2]: the
    scale of d rho (1/m) and of d cot per layer and bin (the 68.3 % quantile of |residual| over
    truth triplets); ``chi2_cut``: volume id -> the best-chi2 cut above which an edge with both
    hits in that volume is dropped (volumes absent: never pruned); ``min_dr`` (mm): smallest r
    separation of an edge that takes part.
    """

    layers: np.ndarray
    curvature_bins: np.ndarray
    sigma: np.ndarray
    chi2_cut: dict[int, float]
    min_dr: float

    def __post_init__(self) -> None:
        bins = len(self.curvature_bins) - 1
        if self.sigma.shape != (len(self.layers), bins, len(QUANTITIES)):
            raise ConfigError(
                f"triplet scales: sigma has shape {self.sigma.shape}, "
                f"expected ({len(self.layers)}, {bins}, {len(QUANTITIES)})"
            )
        if not np.all(np.isfinite(self.sigma)) or not np.all(self.sigma > 0):
            raise ConfigError("triplet scales: every sigma must be finite and > 0")
        if any(not cut > 0 for cut in self.chi2_cut.values()):
            raise ConfigError(f"triplet scales: every chi2 cut must be > 0, got {self.chi2_cut}")

    @property
    def volumes(self) -> tuple[int, ...]:
        """The volumes whose edges may be pruned."""
        return tuple(sorted(self.chi2_cut))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as a model manifest stores it (``pipeline.filter.triplets``)."""
        return {
            "quantities": list(QUANTITIES),
            "layers": [int(k) for k in self.layers],
            "curvature_bins_per_m": [float(x) if np.isfinite(x) else "inf" for x in self.curvature_bins],
            "sigma": [[[float(f"{x:.6g}") for x in cell] for cell in row] for row in self.sigma],
            "chi2_cut": {str(v): round(float(c), 3) for v, c in sorted(self.chi2_cut.items())},
            "min_dr_mm": float(self.min_dr),
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> TripletScales:
        try:
            bins = np.asarray([np.inf if x == "inf" else float(x) for x in spec["curvature_bins_per_m"]])
            return cls(
                layers=np.asarray(spec["layers"], np.int64),
                curvature_bins=bins,
                sigma=np.asarray(spec["sigma"], np.float64).reshape(len(spec["layers"]), len(bins) - 1, -1),
                chi2_cut={int(v): float(c) for v, c in spec["chi2_cut"].items()},
                min_dr=float(spec["min_dr_mm"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"triplet scales: not a TripletScales.to_dict() form ({error!r})") from error

    def with_cuts(self, chi2_cut: Mapping[int, float]) -> TripletScales:
        """The same scales with other cuts (volume id -> cut)."""
        return replace(self, chi2_cut={int(v): float(c) for v, c in chi2_cut.items()})

    # ------------------------------------------------------------------ learning them
    @classmethod
    def from_truth(
        cls,
        events: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
        *,
        pt_min: float = 0.4,
        keep: float = 0.99,
        keep_pt_min: float = 0.9,
        min_dr: float = 5.0,
        volumes: Sequence[int] = (8, 13, 17),
        curvature_bins: Sequence[float] = CURVATURE_BINS,
    ) -> TripletScales:
        """The scales and cuts of simulated events with truth.

        ``events`` yields ``(layers int64 [N], cylindrical [N, 3] (r mm, phi rad, z mm), truth
        edges int [2, T] (consecutive hits of each particle), truth edge pT [T] GeV)``. Triplets
        are pairs of truth edges above ``pt_min`` that meet at a junction, found as the pipeline
        finds them. Per volume of ``volumes``, the cut keeps a fraction ``keep`` of the truth
        edges above ``keep_pt_min`` that could be pruned (both hits in the volume), judged by
        their best chi2 among the other truth edges -- an edge needs one neighbour that agrees.
        """
        bins = np.asarray(curvature_bins, np.float64)
        prepared = []
        middle_layer, abs_rho, residuals = [], [], []
        for layers, cylindrical, edges, edge_pt in events:
            fast = np.asarray(edge_pt) > pt_min
            edges, edge_pt = np.asarray(edges, np.int64)[:, fast], np.asarray(edge_pt)[fast]
            layers = np.asarray(layers, np.int64)
            helix = edge_helix(cylindrical, edges, min_dr)
            first, second = triplet_pairs(helix, junctions(layers, helix, len(layers)))
            middle_layer.append(layers[helix.outer[first]])
            abs_rho.append(0.5 * np.abs(helix.rho[first] + helix.rho[second]))
            residuals.append(_residuals(helix, first, second))
            prepared.append((layers, cylindrical, edges, edge_pt))
        layer = np.concatenate(middle_layer) if middle_layer else np.zeros(0, np.int64)
        if not len(layer):
            raise ConfigError("triplet scales: no truth triplets in the training events")
        rho = np.concatenate(abs_rho)
        res = np.abs(np.concatenate(residuals))
        which_bin = np.clip(np.searchsorted(bins, rho, side="right") - 1, 0, len(bins) - 2)
        keys = np.unique(layer)
        sigma = np.zeros((len(keys), len(bins) - 1, len(QUANTITIES)))
        volume = layer // LAYER_KEY_BASE
        for i, key in enumerate(keys):
            for j in range(len(bins) - 1):
                sigma[i, j] = _scale(res, layer == key, which_bin == j, volume == key // LAYER_KEY_BASE)
        unbounded = cls(
            keys, bins, sigma, {int(v): float(np.finfo(np.float64).max) for v in volumes}, float(min_dr)
        )
        best, edge_volume = [], []
        for layers, cylindrical, edges, edge_pt in prepared:
            fast = (edge_pt > keep_pt_min) & unbounded.prunable(layers, cylindrical, edges)
            best.append(unbounded.best_chi2(layers, cylindrical, edges)[fast])
            edge_volume.append(layers[edges[0, fast]] // LAYER_KEY_BASE)
        all_best, all_volume = np.concatenate(best), np.concatenate(edge_volume)
        cuts = {}
        for v in volumes:
            values = all_best[all_volume == v]
            # an edge with no truth neighbour at all (+inf) counts against the target as it should
            cuts[int(v)] = float(np.quantile(values, keep)) if len(values) else DEFAULT_CHI2_CUT
            cuts[int(v)] = cuts[int(v)] if np.isfinite(cuts[int(v)]) else MAX_CHI2_CUT
        return cls(keys, bins, sigma, cuts, float(min_dr))

    # ------------------------------------------------------------------ using them
    def _inverse_sigma(self, layer: np.ndarray, abs_rho: np.ndarray) -> np.ndarray:
        """float32 [T, 2]: 1 / the scales of triplets with shared-hit ``layer`` and mean |rho|."""
        # a layer the training never saw gets the loosest scale of its bin (last row), so it is
        # not pruned hard; a dense key -> row table: searching 10^7 keys costs more than this
        table = np.full(max(int(self.layers.max(initial=0)), int(layer.max(initial=0))) + 1, len(self.layers))
        table[self.layers] = np.arange(len(self.layers))
        inverse = 1.0 / np.concatenate([self.sigma, self.sigma.max(axis=0, keepdims=True)]).astype(np.float32)
        col = np.clip(
            np.searchsorted(self.curvature_bins, abs_rho, side="right") - 1, 0, self.sigma.shape[1] - 1
        )
        return inverse[table[layer], col]

    def _chi2(self, layer: np.ndarray, abs_rho: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        scaled = residuals.astype(np.float32) * self._inverse_sigma(layer, abs_rho)
        return np.einsum("ij,ij->i", scaled, scaled)

    def best_chi2(self, layers: np.ndarray, cylindrical: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """float64 [E]: every prunable edge's (:meth:`prunable`) smallest triplet chi2, +inf when
        it has no usable neighbour. Only triplets with a prunable edge are formed: the others
        could change no decision (an edge of another volume may still vouch for a prunable one)."""
        edges = np.asarray(edges, np.int64)
        layers = np.asarray(layers, np.int64)
        best = torch.full((edges.shape[1],), float("inf"), dtype=torch.float64)
        if edges.shape[1] == 0:
            return best.numpy()
        helix = edge_helix(cylindrical, edges, self.min_dr)
        junction = junctions(layers, helix, len(layers))
        prunable = self.prunable(layers, cylindrical, edges)
        middles = np.zeros(int(junction.max()) + 1, bool)
        middles[junction[helix.inner[prunable]]] = True
        middles[junction[helix.outer[prunable]]] = True
        for first, second, chi2 in self._triplets(layers, helix, junction, middles):
            best.scatter_reduce_(0, torch.cat([first, second]), torch.cat([chi2, chi2]), reduce="amin")
        return best.numpy()

    def agreement(self, layers: np.ndarray, cylindrical: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """float32 [E, 4]: how each edge agrees with its neighbours, as GNN edge inputs
        (:data:`AGREEMENT_FEATURES`): ``log1p(chi2) / 7`` of its best triplet with an edge further
        in (sharing its inner hit), 1.0 when it has none within the search window (the curvature
        window of chi2 :data:`AGREEMENT_WINDOW_CHI2`; the first column is then
        ``log1p(1000) / 7``), and the same with an edge further out.

        Every edge takes part, whatever its volume: a pixel or endcap edge's agreement tells the
        GNN as much as a pruned volume's. Split in two because a true edge of a track's last
        layer has no outer neighbour, and a noise hit's edges usually agree on one side only."""
        edges = np.asarray(edges, np.int64)
        layers = np.asarray(layers, np.int64)
        best = torch.full((2, edges.shape[1]), float("inf"), dtype=torch.float64)
        if edges.shape[1] > 0:
            helix = edge_helix(cylindrical, edges, self.min_dr)
            junction = junctions(layers, helix, len(layers))
            for first, second, chi2 in self._triplets(layers, helix, junction, None, AGREEMENT_WINDOW_CHI2):
                best[1].scatter_reduce_(0, first, chi2, reduce="amin")  # first's partner is further out
                best[0].scatter_reduce_(0, second, chi2, reduce="amin")
        columns = []
        for side in best.numpy():
            columns += [np.log1p(np.minimum(side, AGREEMENT_CHI2_CAP)) / 7.0, np.isinf(side)]
        return np.stack(columns, axis=1).astype(np.float32)

    def _triplets(
        self,
        layers: np.ndarray,
        helix: EdgeHelix,
        junction: np.ndarray,
        middles: np.ndarray | None,
        window_chi2: float | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(first, second, chi2) of the triplets (:func:`triplet_pairs`) within the curvature
        window of the cuts (or of ``window_chi2``), in blocks of bounded memory: edge rows int64
        and chi2 float64 tensors."""
        window = self._rho_window(layers, junction, window_chi2)
        first, second = triplet_pairs(helix, junction, middles, window)
        for start in range(0, len(first), _BLOCK):
            f, s = first[start : start + _BLOCK], second[start : start + _BLOCK]
            chi2 = self._chi2(
                layers[helix.outer[f]], 0.5 * np.abs(helix.rho[f] + helix.rho[s]), _residuals(helix, f, s)
            ).astype(np.float64)
            yield torch.from_numpy(f), torch.from_numpy(s), torch.from_numpy(chi2)

    def _rho_window(
        self, layers: np.ndarray, junction: np.ndarray, chi2: float | None = None
    ) -> np.ndarray | None:
        """float [junctions]: the largest curvature difference (1/m) a triplet meeting there is
        looked for with: sqrt(loosest cut, or ``chi2``) x the layer's largest rho scale over the
        bins of particles above :data:`WINDOW_PT_MIN` (any pair beyond it fails the cut, unless
        both edges bend like a slower particle's); None when a cut is unbounded (learning)."""
        loosest = max(self.chi2_cut.values(), default=np.inf) if chi2 is None else chi2
        if not loosest < 1e12:
            return None
        bins = self.curvature_bins[:-1] < 0.6 / WINDOW_PT_MIN
        scale = self.sigma[:, bins, 0].max(axis=1)
        table = np.full(max(int(self.layers.max(initial=0)), int(layers.max(initial=0))) + 1, scale.max())
        table[self.layers] = scale
        window = np.zeros(int(junction.max()) + 1)
        # a junction's hits share one layer (overlaps); any of them gives its scale
        window[junction] = np.sqrt(loosest) * table[layers]
        return window

    def edge_cut(self, layers: np.ndarray, cylindrical: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """float64 [E]: each edge's chi2 cut (the looser of its two hits' volumes); +inf where it
        may not be pruned (a hit in a volume without a cut, or hits closer than ``min_dr`` in r)."""
        edges = np.asarray(edges, np.int64)
        volume = np.asarray(layers, np.int64) // LAYER_KEY_BASE
        v_a, v_b = volume[edges[0]], volume[edges[1]]
        table = np.full(int(volume.max(initial=0)) + 1, np.inf)
        for v, cut in self.chi2_cut.items():
            if v < len(table):
                table[v] = cut
        dr = np.abs(cylindrical[edges[0], 0] - cylindrical[edges[1], 0])
        # an edge between two volumes with cuts (pixel to strip barrel) takes the looser one
        return np.where(dr >= self.min_dr, np.maximum(table[v_a], table[v_b]), np.inf)

    def prunable(self, layers: np.ndarray, cylindrical: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """bool [E]: edges a cut applies to (:meth:`edge_cut` finite)."""
        return np.isfinite(self.edge_cut(layers, cylindrical, edges))

    def keep(self, layers: np.ndarray, cylindrical: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """bool [E]: the edges that survive (module docstring)."""
        best = self.best_chi2(layers, cylindrical, edges)
        return best <= self.edge_cut(layers, cylindrical, edges)


def _residuals(helix: EdgeHelix, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """float [T, 2]: (d rho (1/m), d cot) of triplets (second minus first)."""
    return np.stack([helix.rho[second] - helix.rho[first], helix.cot[second] - helix.cot[first]], axis=1)


def _scale(res: np.ndarray, in_layer: np.ndarray, in_bin: np.ndarray, in_volume: np.ndarray) -> np.ndarray:
    """The 68.3 % quantile of |residual| in one (layer, bin) cell, else its volume's, else the bin's."""
    for chosen in (in_layer & in_bin, in_volume & in_bin, in_bin, np.ones_like(in_bin)):
        if chosen.sum() >= _MIN_TRIPLETS:
            return np.maximum(np.quantile(res[chosen], 0.683, axis=0), 1e-6)
    return np.ones(res.shape[1])
