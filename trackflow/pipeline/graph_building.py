"""Graph building: join hits closer than a radius in the embedding space (fixed-radius NN).

The edge set is defined exactly, independent of the search backend:

- a pair (i, j) of hits with i > j (row indices) is an edge when the squared Euclidean distance of
  their embeddings, computed in float64 from the float32 embedding, is ``< radius**2``;
- each hit i keeps at most ``max_neighbours`` such edges to lower-indexed hits, the closest first
  (ties broken by the lower index), so E <= N * max_neighbours;
- edges are returned as int64 [2, E] rows (source, target) with source > target, sorted by
  (source, target) — the convention of the Exa.TrkX reference (REFERENCE.md §4).

Backends only propose *candidate* pairs within a slightly enlarged radius (float32 arithmetic
differs between them); one shared float64 selection (:func:`select_edges`) then applies the
definition above, which is why every backend gives the identical edge set.
Backends: ``faiss`` (IndexFlatL2 range search, brute force — what the study used), ``kdtree``
(scipy ``cKDTree``: a bounded k-nearest search, a ball search where that is full), ``torch``
(blockwise distance matrix, CPU or CUDA), and
``auto``: ``torch`` on CUDA, ``kdtree`` on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import trackflow.config
from trackflow.errors import ConfigError
from trackflow.pipeline.graph import HitGraph
from trackflow.pipeline.layer_map import LayerMap, layer_map_edges

BACKENDS = ("auto", "faiss", "kdtree", "torch")
#: how edges are found: within ``radius`` in the embedding space, or the detector's layer map
METHODS = ("radius", "layer_map")
# relative slack on radius**2 for candidates; float32 distances differ by ~1e-7 * |x|**2
_CANDIDATE_SLACK = 1e-4


def _cfg(key: str, default: Any) -> Any:
    return trackflow.config.get(f"pipeline.graph_building.{key}", default)


@dataclass
class GraphBuildingConfig:
    """``method``: ``radius`` (embedding-space neighbours) or ``layer_map`` (the detector's
    layer pairs and their cuts, :mod:`trackflow.pipeline.layer_map`; ``layer_map`` then holds the
    map as :meth:`LayerMap.to_dict` gives it, and the radius settings are unused).
    ``radius``: in embedding units; ``max_neighbours``: cap per hit (lower-indexed partners);
    ``backend``: auto | faiss | kdtree | torch; ``block_size``: query rows per block for the
    faiss and torch backends (None: sized so one block's distances stay near 256 MB).
    ``dphi_scale``: the layer map's azimuth windows times this (:meth:`LayerMap.widened`): 1 as
    learned; > 1 admits slower particles' pairs, at the cost of more edges."""

    radius: float = field(default_factory=lambda: float(_cfg("radius", 0.1)))
    max_neighbours: int = field(default_factory=lambda: int(_cfg("max_neighbours", 64)))
    backend: str = field(default_factory=lambda: str(_cfg("backend", "auto")))
    block_size: int | None = None
    method: str = field(default_factory=lambda: str(_cfg("method", "radius")))
    layer_map: dict | None = field(default_factory=lambda: _cfg("layer_map", None))
    dphi_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"pipeline.graph_building.method: {self.method!r} is not one of {METHODS}")
        if self.method == "layer_map" and not self.layer_map:
            raise ConfigError("pipeline.graph_building.method layer_map: needs a layer_map (from training)")
        if self.backend not in BACKENDS:
            raise ConfigError(f"pipeline.graph_building.backend: {self.backend!r} is not one of {BACKENDS}")
        if not self.dphi_scale > 0:
            raise ConfigError(f"pipeline.graph_building.dphi_scale: must be > 0, got {self.dphi_scale}")
        if not self.radius > 0:
            raise ConfigError(f"pipeline.graph_building.radius: must be > 0, got {self.radius}")
        if self.max_neighbours < 1:
            raise ConfigError(
                f"pipeline.graph_building.max_neighbours: must be >= 1, got {self.max_neighbours}"
            )


def choose_backend(device: torch.device | str, n_points: int) -> str:
    """The fastest exact backend measured for ``device`` (benchmarks/frnn_backends.py)."""
    return "torch" if torch.device(device).type == "cuda" else "kdtree"


def _block_rows(n_points: int, block_size: int | None) -> int:
    if block_size:
        return int(block_size)
    return int(min(max(256, (1 << 26) // max(n_points, 1)), max(n_points, 1)))


def _loose_radius2(points: torch.Tensor, radius: float) -> float:
    max_sq_norm = float(points.double().pow(2).sum(1).max()) if len(points) else 0.0
    return radius**2 * (1 + _CANDIDATE_SLACK) + 1e-6 * max(1.0, max_sq_norm)


def candidates_kdtree(
    points: torch.Tensor, radius2: float, block_size: int | None = None, max_neighbours: int | None = None
):
    """Candidate (source > target) pairs from scipy's cKDTree (CPU).

    Each hit asks the tree for its ``k = 2 * max_neighbours + 1`` nearest points within the
    radius (65 without a cap): a bounded k-nearest search prunes more of a 12-d tree than a ball
    search (with the sliding-midpoint tree below, 2.5 s against 6 s for ``query_pairs`` on a
    94k-hit real event; little gain on denser simulated events). A hit that finds k points may
    have more within the radius, so its lower-indexed partners come from a full ball search
    instead: k only sets the speed, never the result. Each hit contributes all its partners
    with a lower index, once; the tree's ``workers`` follow the torch thread setting.
    """
    from scipy.spatial import cKDTree

    data = points.detach().cpu().numpy().astype(np.float64)
    n = len(data)
    radius = float(np.sqrt(radius2))
    # sliding-midpoint splits (not median): queries on unit-norm 12-d embeddings were 1.8x faster
    # on a 20k-hit sample, 1.1-1.2x over whole events
    tree = cKDTree(data, balanced_tree=False)
    workers = max(1, torch.get_num_threads())
    k = min(n, 2 * max_neighbours + 1 if max_neighbours else 65)
    sources, targets = [], []
    # query rows per block: the [rows, k] answers stay ~64 MB
    rows = int(block_size) if block_size else max(1024, (1 << 22) // max(k, 1))
    # hits are asked in the tree's leaf order: consecutive queries then walk the same branches
    # and leaves while they are in cache (3x faster on a 108k-hit simulated event, 4.8 s -> 1.6 s)
    order = tree.indices.astype(np.int64)
    for start in range(0, n, rows):
        hit = order[start : start + rows]
        query = data[hit]
        dist, found = tree.query(query, k=k, distance_upper_bound=radius, workers=workers)
        dist, found = dist.reshape(len(query), -1), found.reshape(len(query), -1)
        full = np.isfinite(dist[:, -1]) if k < n else np.zeros(len(query), bool)
        within = np.isfinite(dist) & ~full[:, None]
        src = np.repeat(hit, within.sum(1))
        dst = found[within].astype(np.int64)
        keep = dst < src
        sources.append(src[keep])
        targets.append(dst[keep])
        if full.any():
            crowded = hit[full]
            lists = tree.query_ball_point(data[crowded], radius, workers=workers)
            src = np.repeat(crowded, [len(partners) for partners in lists])
            dst = np.concatenate(lists).astype(np.int64)
            keep = dst < src
            sources.append(src[keep])
            targets.append(dst[keep])
    return torch.from_numpy(np.concatenate(sources)), torch.from_numpy(np.concatenate(targets))


def candidates_faiss(
    points: torch.Tensor, radius2: float, block_size: int | None = None, max_neighbours: int | None = None
):
    """Candidate pairs from FAISS IndexFlatL2 range search (brute force, as in the study)."""
    import faiss

    data = np.ascontiguousarray(points.detach().cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    sources, targets = [], []
    rows = _block_rows(len(data), block_size)
    for start in range(0, len(data), rows):
        lims, _, found = index.range_search(data[start : start + rows], radius2)
        query = np.repeat(
            np.arange(start, start + len(lims) - 1, dtype=np.int64), np.diff(lims).astype(np.int64)
        )
        keep = found < query
        sources.append(query[keep])
        targets.append(found[keep].astype(np.int64))
    if not sources:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.concatenate(sources)), torch.from_numpy(np.concatenate(targets))


def candidates_torch(
    points: torch.Tensor, radius2: float, block_size: int | None = None, max_neighbours: int | None = None
):
    """Candidate pairs from blockwise squared distances (float32 matmul; CPU or CUDA).

    Query block [a, b) is compared with targets [0, b) only, since pairs are kept with
    source > target; memory is one block of distances.
    """
    pts = points.detach().to(torch.float32)
    sq_norm = pts.pow(2).sum(1)
    rows = _block_rows(len(pts), block_size)
    sources, targets = [], []
    for start in range(0, len(pts), rows):
        stop = min(start + rows, len(pts))
        query = pts[start:stop]
        dist2 = torch.addmm(sq_norm[:stop].unsqueeze(0), query, pts[:stop].T, alpha=-2.0)
        dist2 += sq_norm[start:stop].unsqueeze(1)
        index = torch.arange(start, stop, device=pts.device).unsqueeze(1)
        mask = (dist2 < radius2) & (torch.arange(stop, device=pts.device).unsqueeze(0) < index)
        src, dst = mask.nonzero(as_tuple=True)
        sources.append(src + start)
        targets.append(dst)
    if not sources:
        empty = torch.zeros(0, dtype=torch.int64, device=pts.device)
        return empty, empty
    return torch.cat(sources), torch.cat(targets)


# every backend: (points, radius2, block_size, max_neighbours) -> (sources, targets); the cap is a
# hint that lets the k-d tree search less, the brute-force backends ignore it
CANDIDATES: dict[str, Callable] = {
    "faiss": candidates_faiss,
    "kdtree": candidates_kdtree,
    "torch": candidates_torch,
}


def _squared_distances(columns: Any, sources: Any, targets: Any) -> Any:
    """sum_k (x_k[source] - x_k[target])**2 in float64, dimension by dimension in order.

    Works on numpy arrays and torch tensors alike; ``columns`` is the float64 embedding
    transposed ([D, N]). The fixed order of operations (no fused multiply-add, no pairwise
    sums) gives bit-identical results in numpy and torch.
    """
    acc = None
    for column in columns:
        diff = column[sources] - column[targets]
        acc = diff * diff if acc is None else acc + diff * diff
    return acc


def _select_cpu(
    points: torch.Tensor, src: np.ndarray, dst: np.ndarray, radius: float, cap: int
) -> torch.Tensor:
    import scipy.sparse as sp

    n = len(points)
    columns = points.detach().cpu().numpy().astype(np.float64).T.copy()
    dist2 = _squared_distances(columns, src, dst)
    keep = dist2 < radius**2
    src, dst, dist2 = src[keep], dst[keep], dist2[keep]
    # order by (source, target): CSR conversion buckets rows in O(E) and sorts each short row;
    # the data carry each pair's position (+1: CSR must not see a zero)
    csr = sp.csr_matrix((np.arange(1, len(src) + 1), (src, dst)), shape=(n, n))
    csr.sort_indices()
    order = csr.data - 1
    src, dst, dist2 = src[order], dst[order], dist2[order]
    counts = np.diff(csr.indptr)
    if len(src) and counts.max() > cap:
        # rank partners of over-full sources by (distance, target): lexsort is stable and the
        # entries already run by target within a source
        crowded = np.nonzero(np.repeat(counts > cap, counts))[0]
        ranked = crowded[np.lexsort((dist2[crowded], src[crowded]))]
        first = np.searchsorted(src[ranked], src[ranked], side="left")
        keep = np.repeat(counts <= cap, counts)
        keep[ranked[np.arange(len(ranked)) - first < cap]] = True
        src, dst = src[keep], dst[keep]
    return torch.from_numpy(np.stack([src, dst]).astype(np.int64))


def _select_torch(
    points: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, radius: float, cap: int
) -> torch.Tensor:
    n = len(points)
    dist2 = _squared_distances(points.detach().to(torch.float64).T.contiguous(), src, dst)
    keep = dist2 < radius**2
    src, dst, dist2 = src[keep], dst[keep], dist2[keep]
    if len(src) and int(torch.bincount(src, minlength=n).max()) > cap:
        order = torch.argsort(dst, stable=True)
        order = order[torch.argsort(dist2[order], stable=True)]
        order = order[torch.argsort(src[order], stable=True)]
        src, dst = src[order], dst[order]
        counts = torch.bincount(src, minlength=n)
        first = torch.cumsum(counts, 0) - counts
        keep = torch.arange(len(src), device=src.device) - first[src] < cap
        src, dst = src[keep], dst[keep]
    order = torch.argsort(src * n + dst)
    return torch.stack([src[order], dst[order]])


def select_edges(
    points: torch.Tensor,
    sources: torch.Tensor,
    targets: torch.Tensor,
    radius: float,
    max_neighbours: int,
) -> torch.Tensor:
    """Apply the exact edge definition (module docstring) to candidate pairs -> int64 [2, E].

    Candidates must have source > target, appear once each, and include every true edge
    (backends search a slightly larger radius). Computed with numpy/scipy for points on the CPU
    and with torch on the points' device otherwise; both use the same float64 arithmetic.
    """
    device = points.device
    if len(sources) == 0:
        return torch.zeros((2, 0), dtype=torch.int64, device=device)
    if device.type == "cpu":
        src = sources.cpu().numpy().astype(np.int64, copy=False)
        dst = targets.cpu().numpy().astype(np.int64, copy=False)
        return _select_cpu(points, src, dst, radius, max_neighbours)
    return _select_torch(points, sources.to(device), targets.to(device), radius, max_neighbours)


def build_edges(
    points: torch.Tensor,
    radius: float,
    max_neighbours: int,
    backend: str = "auto",
    block_size: int | None = None,
    segments: torch.Tensor | None = None,
) -> torch.Tensor:
    """Edges int64 [2, E] (source > target) between ``points`` [N, D] closer than ``radius``.

    Same result for every backend; the result lies on the device of ``points``. ``segments``
    (int [N], e.g. the event of each hit in a fused batch) keeps hits of different segments
    apart: one more coordinate, segment x 2 x radius, puts them beyond the radius while leaving
    distances inside a segment exactly as they were, so each segment gets the edges it would get
    alone (indices offset by its position).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"pipeline.graph_building.backend: {backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        backend = choose_backend(points.device, len(points))
    if len(points) < 2:
        return torch.zeros((2, 0), dtype=torch.int64, device=points.device)
    if segments is not None and int(segments.max()) > int(segments.min()):
        offset = segments.to(points.device, torch.float32).unsqueeze(1) * (2.0 * radius)
        points = torch.cat([points.to(torch.float32), offset], dim=1)
    radius2 = _loose_radius2(points, radius)
    sources, targets = CANDIDATES[backend](points, radius2, block_size, max_neighbours)
    return select_edges(points, sources, targets, radius, max_neighbours)


class GraphBuilding:
    """Stage ``"graph_building"``: ``graph.embedding`` -> ``graph.edges`` (see module docstring)."""

    name = "graph_building"

    def __init__(self, config: GraphBuildingConfig | None = None) -> None:
        self.config = config or GraphBuildingConfig()
        self._map: tuple[tuple[int, float], LayerMap | None] = ((0, 1.0), None)

    @property
    def layer_map(self) -> LayerMap | None:
        """The layer map of the current config (None for the radius method); parsed once per
        config, which callers may replace."""
        c = self.config
        if c.method != "layer_map":
            return None
        key = (id(c.layer_map), c.dphi_scale)
        if self._map[0] != key or self._map[1] is None:
            layer_map = LayerMap.from_dict(c.layer_map or {})
            self._map = (key, layer_map if c.dphi_scale == 1.0 else layer_map.widened(c.dphi_scale))
        return self._map[1]

    def __call__(self, graph: HitGraph) -> HitGraph:
        c = self.config
        if self.layer_map is not None:
            if graph.layers is None or graph.cylindrical is None:
                raise ValueError(
                    "graph_building with a layer map needs the hits' volume_id and layer_id "
                    "(HitGraph.layers, cylindrical: Pipeline.prepare fills them from a hits frame)"
                )
            segments = None if graph.segments is None else graph.segments.cpu().numpy()
            edges = layer_map_edges(self.layer_map, graph.layers, graph.cylindrical, segments)
            graph.edges = torch.from_numpy(edges).to(graph.device)
        else:
            if graph.embedding is None:
                raise ValueError("graph_building needs the embedding stage to have run")
            graph.edges = build_edges(
                graph.embedding, c.radius, c.max_neighbours, c.backend, c.block_size, graph.segments
            )
        graph.edge_scores = None
        graph.counts["edges_graph"] = graph.n_edges
        return graph

    def __repr__(self) -> str:
        c = self.config
        if self.layer_map is not None:
            return f"GraphBuilding(method='layer_map', layer_pairs={len(self.layer_map)})"
        return f"GraphBuilding(radius={c.radius}, max_neighbours={c.max_neighbours}, backend={c.backend!r})"
