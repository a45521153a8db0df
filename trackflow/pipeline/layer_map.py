"""Graph building from a layer map: which detector layers a track goes between, and how.

A learned metric (the embedding's radius graph) has to place every hit at one point, yet a hit
alone cannot tell which vertex its particle came from: with the HL-LHC's ~50 mm long luminous
region, a pixel-barrel hit at r = 32 mm is compatible with next-layer hits spread over ~100 mm
in z. A metric trained on a 5 mm beam spot then loses most of those pairs, and one trained on a
wide beam spot has to spread out until its neighbour cap binds (96 % of the truth edges at 27
edges per hit, against 98.5 % at 10 here). The layer map asks the geometry directly, as the
module map of GNN4ITk does, at layer rather than module granularity (a few simulated events
fill it):

- *which* layer pairs: every pair of layers (``volume_id * 100 + layer_id``, the same on the
  TrackML detector and ACTS's Generic Detector) joined by consecutive hits of simulated particles,
  the same layer included (overlapping modules);
- *how*, per layer pair, from the same truth edges of particles above ``pt_min`` (GeV):
  ``dphi_max`` (rad), the bound on the azimuth difference of the two hits (curvature: falls
  with pT), and ``z0_min``/``z0_max`` (mm), the range of the pair's intercept with the beam line,
  ``z0 = z_a - r_a (z_b - z_a) / (r_b - r_a)``, never narrower than ``±z0_cover`` (the luminous
  region it must accept, whatever beam spot the simulation had).

An edge is then a pair of hits on a mapped layer pair with ``|dphi| <= dphi_max`` and
``z0_min <= z0 <= z0_max``: exact and independent of the order of the hits, so the same hits
always give the same edges. Edges are int64 [2, E] rows (source, target), source > target,
sorted, as every graph-building method returns them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trackflow.errors import ConfigError

#: layer key of a hit: volume_id * LAYER_KEY_BASE + layer_id
LAYER_KEY_BASE = 100
#: rad: widening a window (LayerMap.widened) stops here; ~ the bend of a 0.5 GeV track between
#: layers 200 mm apart in 2 T
WIDEN_CAP = 0.25
# candidate pairs checked per block (bounded memory: ~6 arrays of this many int64/float64)
_BLOCK_PAIRS = 1 << 22


def helix_dphi(r_a: np.ndarray, r_b: np.ndarray, pt: float, b_field: float) -> np.ndarray:
    """|dphi| (rad) between the points at radii ``r_a`` and ``r_b`` (mm) of a helix from the beam
    line with transverse momentum ``pt`` (GeV) in a solenoid of ``b_field`` (T): the circle's
    radius is R = pT / (0.3 B) (m), and a point at radius r lies at azimuth asin(r / 2R) from its
    start. Radii beyond 2R (a looper's turning point) count as 2R."""
    two_r = 2.0 * 1000.0 * pt / (0.3 * b_field)
    a = np.arcsin(np.minimum(np.asarray(r_a, np.float64) / two_r, 1.0))
    b = np.arcsin(np.minimum(np.asarray(r_b, np.float64) / two_r, 1.0))
    return np.abs(b - a)


def layer_keys(volume_id: np.ndarray, layer_id: np.ndarray) -> np.ndarray:
    """int64 [N] layer key of each hit (``volume_id * 100 + layer_id``)."""
    return np.asarray(volume_id, np.int64) * LAYER_KEY_BASE + np.asarray(layer_id, np.int64)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles (rad) into [-pi, pi)."""
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def intercept_z0(r_a: np.ndarray, z_a: np.ndarray, r_b: np.ndarray, z_b: np.ndarray) -> np.ndarray:
    """z (mm) where the straight line through two hits in (r, z) meets the beam line (r = 0).

    Symmetric in the two hits; +-inf (or nan) for hits at the same radius.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return z_a - r_a * (z_b - z_a) / (r_b - r_a)


@dataclass(frozen=True)
class LayerMap:
    """The layer pairs a track may join and each pair's cuts (module docstring).

    Arrays of length P (one row per layer pair, ``inner <= outer`` as keys): ``inner``, ``outer``
    int64 layer keys; ``dphi_max`` (rad); ``z0_min``, ``z0_max`` (mm); ``edges`` the number of
    truth edges that defined the row (what the map was learned from).
    """

    inner: np.ndarray
    outer: np.ndarray
    dphi_max: np.ndarray
    z0_min: np.ndarray
    z0_max: np.ndarray
    edges: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.inner)
        if any(len(a) != n for a in (self.outer, self.dphi_max, self.z0_min, self.z0_max, self.edges)):
            raise ConfigError("layer map: every column needs one value per layer pair")
        if n and not (
            np.all(np.isfinite(self.dphi_max))
            and np.all(self.dphi_max > 0)
            and np.all(self.z0_min < self.z0_max)
        ):
            raise ConfigError("layer map: dphi_max must be > 0 and z0_min < z0_max for every layer pair")

    def __len__(self) -> int:
        return len(self.inner)

    # --------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"columns": [...], "pairs": [[inner, outer, dphi, z0_min, z0_max, edges], ...]}``."""
        rows = [
            [int(a), int(b), round(float(p), 6), round(float(lo), 3), round(float(hi), 3), int(n)]
            for a, b, p, lo, hi, n in zip(
                self.inner, self.outer, self.dphi_max, self.z0_min, self.z0_max, self.edges, strict=True
            )
        ]
        return {
            "columns": ["inner", "outer", "dphi_max_rad", "z0_min_mm", "z0_max_mm", "edges"],
            "pairs": rows,
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> LayerMap:
        try:
            rows = np.asarray(spec["pairs"], dtype=np.float64).reshape(-1, 6)
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(
                f"layer map: expected {{'pairs': [[inner, outer, dphi, z0_min, z0_max, n]]}} ({error})"
            ) from error
        return cls.from_table(rows)

    @classmethod
    def from_table(cls, rows: np.ndarray) -> LayerMap:
        """From a float [P, 6] table with the columns of :meth:`to_dict`."""
        return cls(
            inner=rows[:, 0].astype(np.int64),
            outer=rows[:, 1].astype(np.int64),
            dphi_max=rows[:, 2],
            z0_min=rows[:, 3],
            z0_max=rows[:, 4],
            edges=rows[:, 5].astype(np.int64),
        )

    def widened(self, scale: float, cap: float = WIDEN_CAP) -> LayerMap:
        """The same map with every azimuth window ``dphi_max`` times ``scale``, but never above
        ``cap`` (rad) unless it was learned wider (then it stays as learned): a map learned from
        particles above p GeV then admits pairs of particles down to about p / scale GeV
        (dphi falls as 1/pT), without letting a few scattering-dominated rare pairs open up."""
        dphi = np.minimum(self.dphi_max * scale, np.maximum(self.dphi_max, cap))
        return LayerMap(self.inner, self.outer, dphi, self.z0_min, self.z0_max, self.edges)

    # --------------------------------------------------------------- learning it
    @classmethod
    def from_truth(
        cls,
        events: Iterable[tuple[np.ndarray, ...]],
        pt_min: float = 0.8,
        quantile: float = 0.995,
        z0_quantile: float = 0.999,
        z0_cover: float = 200.0,
        margin: float = 0.1,
        min_edges: int = 5,
        b_field: float | None = None,
        field_factor: float = 1.5,
        field_floor: float = 0.01,
    ) -> LayerMap:
        """The map of simulated events with truth.

        ``events`` yields ``(layers [N], cylindrical [N, 3] (r mm, phi rad, z mm), truth edges
        [2, T] (rows into the hits), truth edge pT [T] GeV)`` per event — as a 4-tuple, or a
        5-tuple whose last item is ignored. A layer pair needs ``min_edges`` truth edges above
        ``pt_min`` to enter the map (rarer pairs are mostly scattering); its ``dphi_max`` is the
        ``quantile`` of |dphi| over those edges and its z0 range the ``1 - z0_quantile`` ..
        ``z0_quantile`` quantiles, widened to at least ``±z0_cover`` mm; both then grow by
        ``margin`` (a fraction) so the cuts sit outside the training data's own tails.

        With ``b_field`` (T), a window is also capped by what the field allows: ``field_factor``
        times the bend (:func:`helix_dphi`) of a ``pt_min`` particle between the radii of the
        pair's truth edges (their ``quantile``), but never below ``field_floor`` rad. Learned from
        slow particles, a rare pair's quantile is set by a few scattered or looping tracks (0.7-1.3
        rad seen from 0.6 GeV, where the field bends a 0.5 GeV track by ~0.06 rad); the cap keeps
        such a pair from flooding the graph with fakes.
        """
        keys_a, keys_b, dphis, z0s, bends = [], [], [], [], []
        for item in events:
            layers, cylindrical, edges, edge_pt = item[:4]
            fast = np.asarray(edge_pt) > pt_min
            a, b = np.asarray(edges)[:, fast]
            r, phi, z = (np.asarray(cylindrical, np.float64)[:, i] for i in range(3))
            keys_a.append(np.minimum(layers[a], layers[b]))
            keys_b.append(np.maximum(layers[a], layers[b]))
            dphis.append(np.abs(wrap_angle(phi[b] - phi[a])))
            z0s.append(intercept_z0(r[a], z[a], r[b], z[b]))
            if b_field is not None:
                bends.append(helix_dphi(r[a], r[b], pt_min, b_field))
        if not keys_a:
            raise ConfigError("layer map: no training events")
        ka, kb = np.concatenate(keys_a), np.concatenate(keys_b)
        dphi, z0 = np.concatenate(dphis), np.concatenate(z0s)
        bend = np.concatenate(bends) if bends else None
        pair = ka * (LAYER_KEY_BASE * LAYER_KEY_BASE * 10) + kb
        order = np.argsort(pair, kind="stable")
        pair, dphi, z0 = pair[order], dphi[order], z0[order]
        bend = None if bend is None else bend[order]
        starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        stops = np.r_[starts[1:], len(pair)]
        rows = []
        for start, stop in zip(starts, stops, strict=True):
            if stop - start < min_edges:
                continue
            d = dphi[start:stop]
            zz = z0[start:stop]
            zz = zz[np.isfinite(zz)]
            lo = float(np.quantile(zz, 1.0 - z0_quantile)) if len(zz) else -z0_cover
            hi = float(np.quantile(zz, z0_quantile)) if len(zz) else z0_cover
            lo, hi = min(lo, -z0_cover), max(hi, z0_cover)
            centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo) * (1.0 + margin)
            p = pair[start]
            dphi_max = max(float(np.quantile(d, quantile)) * (1.0 + margin), 1e-4)
            if bend is not None:
                cap = field_factor * float(np.quantile(bend[start:stop], quantile))
                dphi_max = min(dphi_max, max(cap, field_floor))
            rows.append(
                (
                    p // (LAYER_KEY_BASE * LAYER_KEY_BASE * 10),
                    p % (LAYER_KEY_BASE * LAYER_KEY_BASE * 10),
                    dphi_max,
                    centre - half,
                    centre + half,
                    stop - start,
                )
            )
        if not rows:
            raise ConfigError(f"layer map: no layer pair has {min_edges} truth edges above {pt_min} GeV")
        return cls.from_table(np.asarray(rows, dtype=np.float64))


def _window_pairs(
    queries: np.ndarray, targets: np.ndarray, target_phi: np.ndarray, query_phi: np.ndarray, width: float
) -> tuple[np.ndarray, np.ndarray]:
    """All (query, target) pairs with |dphi| <= width: ``targets`` sorted by ``target_phi``.

    The sorted azimuths are repeated at -2pi and +2pi so a window across ±pi is one range.
    """
    n = len(targets)
    extended = np.concatenate([target_phi - 2.0 * np.pi, target_phi, target_phi + 2.0 * np.pi])
    lo = np.searchsorted(extended, query_phi - width, side="left")
    hi = np.searchsorted(extended, query_phi + width, side="right")
    # a window wider than 2 pi would see a target twice
    hi = np.minimum(hi, lo + n)
    counts = hi - lo
    total = int(counts.sum())
    src = np.repeat(queries, counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    dst = targets[(np.repeat(lo, counts) + offsets) % n]
    return src, dst


class _ZBinnedTargets:
    """A layer's hits (targets of one layer pair) sorted by (azimuth bin, z), for windows in both
    azimuth and z (:meth:`candidates`). Bins are a little over two windows wide, so a window
    ``[phi - width, phi + width]`` lies within two neighbouring bins (wrapping at ±pi)."""

    def __init__(self, hits: np.ndarray, r: np.ndarray, phi: np.ndarray, z: np.ndarray, width: float) -> None:
        self.n_bins = int(np.floor(np.pi / (width * (1.0 + 1e-6))))
        self.bin_width = 2.0 * np.pi / max(self.n_bins, 1)
        r_b, z_b = r[hits], z[hits]
        self.r_min, self.r_max = float(r_b.min()), float(r_b.max())
        self.z_min, self.z_max = float(z_b.min()), float(z_b.max())
        self.stride = self.z_max - self.z_min + 1.0  # mm: one bin's z range in the key, and a gap
        keys = self._bins(phi[hits]) * self.stride + (z_b - self.z_min)
        order = np.argsort(keys, kind="stable")
        self.keys, self.hits = keys[order], hits[order]

    def _bins(self, angle: np.ndarray) -> np.ndarray:
        return np.floor((angle + np.pi) / self.bin_width).astype(np.int64) % self.n_bins

    def z_window(
        self, r_a: np.ndarray, z_a: np.ndarray, z0_lo: float, z0_hi: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bounds (mm) on the z of a target joined to a query at (``r_a``, ``z_a``) with its
        intercept in [``z0_lo``, ``z0_hi``]: the target's z = z_a + (z_a - z0)(r_b - r_a) / r_a is
        bilinear in (z0, r_b), so over z0 in its window and r_b within the layer's radii its
        extremes are at the four corners. Clipped to the layer's z range."""
        corners = [
            z_a + (z_a - z0) * (r_b - r_a) / r_a for z0 in (z0_lo, z0_hi) for r_b in (self.r_min, self.r_max)
        ]
        low = np.clip(np.minimum.reduce(corners), self.z_min, self.z_max)
        high = np.clip(np.maximum.reduce(corners), self.z_min, self.z_max)
        return low, high

    def candidates(
        self, queries: np.ndarray, phi: np.ndarray, width: float, low: np.ndarray, high: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(query, target) pairs with the target in the query's z window [``low``, ``high``]
        (mm, per query) and in its azimuth window, exactly as :func:`_window_pairs` selects."""
        first = self._bins(phi[queries] - width)
        sources, targets = [], []
        for bins in (first, (first + 1) % self.n_bins):
            start = np.searchsorted(self.keys, bins * self.stride + (low - self.z_min), side="left")
            stop = np.searchsorted(self.keys, bins * self.stride + (high - self.z_min), side="right")
            counts = stop - start
            total = int(counts.sum())
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            sources.append(np.repeat(queries, counts))
            targets.append(self.hits[np.repeat(start, counts) + offsets])
        src, dst = np.concatenate(sources), np.concatenate(targets)
        # the azimuth window as _window_pairs' sorted search decides it: the target's azimuth,
        # or it -+ 2 pi, within [phi_q - width, phi_q + width], both ends included
        lower, upper = phi[src] - width, phi[src] + width
        phi_t = phi[dst]
        inside = np.zeros(len(src), bool)
        for shifted in (phi_t - 2.0 * np.pi, phi_t, phi_t + 2.0 * np.pi):
            inside |= (shifted >= lower) & (shifted <= upper)
        return src[inside], dst[inside]


# a z window pays when the windows cover less than this share of the layer's z range: binned
# azimuth windows see up to twice the targets of the exact sorted search
Z_WINDOW_MAX_SHARE = 0.3
# ... and when the layer pair has work enough to repay sorting its targets (small events: never)
Z_WINDOW_MIN_CANDIDATES = 100_000


def layer_map_edges(
    layer_map: LayerMap,
    layers: np.ndarray,
    cylindrical: np.ndarray,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """Edges int64 [2, E] (source > target, sorted) of the hits under ``layer_map``.

    ``layers`` int64 [N] layer keys (:func:`layer_keys`); ``cylindrical`` [N, 3]: r (mm), phi
    (rad), z (mm). ``segments`` int [N] (several events fused into one graph): hits of
    different segments are never joined.
    """
    layers = np.asarray(layers, np.int64)
    cylindrical = np.asarray(cylindrical, np.float64)
    r, phi, z = cylindrical[:, 0], cylindrical[:, 1], cylindrical[:, 2]
    # hits of each layer, sorted by azimuth (searched as targets)
    order = np.lexsort((phi, layers))
    sorted_keys = layers[order]
    present, starts = np.unique(sorted_keys, return_index=True)
    stops = np.r_[starts[1:], len(order)]
    span = {int(k): (int(s), int(e)) for k, s, e in zip(present, starts, stops, strict=True)}
    sources, targets = [], []
    for a, b, width, z0_lo, z0_hi in zip(
        layer_map.inner, layer_map.outer, layer_map.dphi_max, layer_map.z0_min, layer_map.z0_max, strict=True
    ):
        if int(a) not in span or int(b) not in span:
            continue
        qa, qb = span[int(a)], span[int(b)]
        queries = order[qa[0] : qa[1]]
        hits_b = order[qb[0] : qb[1]]
        phi_b = phi[hits_b]
        # Where the intercept window confines the target's z to a small part of its layer (barrel
        # targets: ~5-25 % of the candidates of the azimuth window alone pass the z0 cut), the
        # targets are searched in azimuth and z at once; the same pairs, 2-3x fewer candidates
        expected = max(1.0, len(hits_b) * min(1.0, float(width) / np.pi))  # candidates per query
        worth = np.pi / width >= 3.0 and len(queries) * expected >= Z_WINDOW_MIN_CANDIDATES
        binned = _ZBinnedTargets(hits_b, r, phi, z, float(width)) if worth else None
        z_low = z_high = None
        if binned is not None:
            z_low, z_high = binned.z_window(r[queries], z[queries], float(z0_lo), float(z0_hi))
            share = float(np.mean(z_high - z_low)) / max(binned.z_max - binned.z_min, 1e-9)
            if share > Z_WINDOW_MAX_SHARE:
                binned = None
        # queries in blocks whose candidate pairs stay near _BLOCK_PAIRS
        step = max(1, int(_BLOCK_PAIRS / expected))
        for start in range(0, len(queries), step):
            block = queries[start : start + step]
            if binned is not None and z_low is not None and z_high is not None:
                window = slice(start, start + step)
                src, dst = binned.candidates(block, phi, float(width), z_low[window], z_high[window])
            else:
                src, dst = _window_pairs(block, hits_b, phi_b, phi[block], float(width))
            if a == b:
                keep = src > dst  # each same-layer pair once
                src, dst = src[keep], dst[keep]
            z0 = intercept_z0(r[src], z[src], r[dst], z[dst])
            # the azimuth window is exact already
            keep = (z0 >= z0_lo) & (z0 <= z0_hi)
            src, dst = src[keep], dst[keep]
            sources.append(np.maximum(src, dst))
            targets.append(np.minimum(src, dst))
    if not sources:
        return np.zeros((2, 0), np.int64)
    src, dst = np.concatenate(sources), np.concatenate(targets)
    if segments is not None:
        segments = np.asarray(segments)
        keep = segments[src] == segments[dst]
        src, dst = src[keep], dst[keep]
    # a pair of layers is one row of the map and a window sees each target once, so every hit
    # pair comes once: a sort (not np.unique, 7x slower) orders them by (source, target)
    n = max(len(layers), 1)
    keys = np.sort(src * n + dst)
    return np.stack([keys // n, keys % n]).astype(np.int64)
