"""Labelling: turn scored edges into tracks, one label per hit.

Two methods (REFERENCE.md §2):

- ``"cc"``: connected components of the edges with score > ``cut``
  (``scipy.sparse.csgraph.connected_components``);
- ``"walkthrough"`` (ACTS/acorn CC-and-walk): components of the edges above a loose cut that are
  simple paths of >= ``min_hits`` hits are tracks as they are; in the rest, walks start from the
  innermost unused hit and follow, hit by hit outwards (by r), the best-scored edge above
  ``walk_cut`` to an unused hit; a walk of >= ``min_hits`` hits is a track. This keeps one
  greedy road per start rather than acorn's branching roads (simpler, same cuts).

Every hit gets a label; a hit on no kept edge is a track of its own. Labels are 0..T-1.
Labelling runs on the CPU: on CUDA the device-to-host copy happens inside the stage (and is
therefore part of its timing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

import trackflow.config
from trackflow.errors import ConfigError
from trackflow.pipeline.graph import HitGraph

METHODS = ("cc", "walkthrough")


def _cfg(key: str, default: Any) -> Any:
    return trackflow.config.get(f"pipeline.labelling.{key}", default)


@dataclass
class LabellingConfig:
    """``method``: cc | walkthrough; ``cut``: CC edge-score cut; ``walk_loose_cut``,
    ``walk_cut``, ``min_hits``: walkthrough cuts and the smallest track it forms."""

    method: str = field(default_factory=lambda: str(_cfg("method", "cc")))
    cut: float = field(default_factory=lambda: float(_cfg("cut", 0.5)))
    walk_loose_cut: float = field(default_factory=lambda: float(_cfg("walk_loose_cut", 0.01)))
    walk_cut: float = field(default_factory=lambda: float(_cfg("walk_cut", 0.6)))
    min_hits: int = field(default_factory=lambda: int(_cfg("min_hits", 3)))

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"pipeline.labelling.method: {self.method!r} is not one of {METHODS}")
        for key in ("cut", "walk_loose_cut", "walk_cut"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"pipeline.labelling.{key}: must be in [0, 1)")


def _components(n_hits: int, edges: np.ndarray) -> np.ndarray:
    adjacency = sp.coo_matrix(
        (np.ones(edges.shape[1], dtype=np.int8), (edges[0], edges[1])), shape=(n_hits, n_hits)
    ).tocsr()
    _, labels = connected_components(adjacency, directed=False)
    return labels.astype(np.int64)


def connected_component_labels(n_hits: int, edges: np.ndarray, scores: np.ndarray, cut: float) -> np.ndarray:
    """Track label int64 [n_hits] per hit: connected components of edges with score > ``cut``."""
    return _components(n_hits, edges[:, scores > cut])


def _compact(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def walkthrough_labels(
    n_hits: int,
    edges: np.ndarray,
    scores: np.ndarray,
    r: np.ndarray,
    loose_cut: float = 0.01,
    walk_cut: float = 0.6,
    min_hits: int = 3,
) -> np.ndarray:
    """Track label int64 [n_hits] by CC-and-walk (module docstring); ``r`` [n_hits] orders hits
    from the beam line outwards (any increasing function of the radius, e.g. r/1000)."""
    keep = scores > loose_cut
    edges, scores = edges[:, keep], scores[keep]
    components = _components(n_hits, edges)
    labels = np.full(n_hits, -1, dtype=np.int64)

    # components that are simple paths: n_edges == n_hits - 1 and no hit of degree > 2
    size = np.bincount(components, minlength=n_hits)
    degree = np.bincount(edges.ravel(), minlength=n_hits)
    n_edges = np.bincount(components[edges[0]], minlength=n_hits)
    max_degree = np.zeros(n_hits, dtype=np.int64)
    np.maximum.at(max_degree, components, degree)
    is_path = (size >= min_hits) & (n_edges == size - 1) & (max_degree <= 2)
    on_path = is_path[components]
    labels[on_path] = components[on_path]
    next_label = n_hits  # walked tracks get labels above every component id

    # walk the rest along edges above walk_cut, inner to outer
    rest = ~on_path[edges[0]] & (scores > walk_cut)
    inner = np.where(r[edges[0, rest]] <= r[edges[1, rest]], edges[0, rest], edges[1, rest])
    outer = np.where(r[edges[0, rest]] <= r[edges[1, rest]], edges[1, rest], edges[0, rest])
    walk_scores = scores[rest]
    order = np.lexsort((-walk_scores, inner))  # per inner hit, best edge first
    inner, outer, walk_scores = inner[order], outer[order], walk_scores[order]
    starts = np.searchsorted(inner, np.arange(n_hits + 1))
    used = on_path.copy()
    for start_hit in np.unique(inner)[np.argsort(r[np.unique(inner)], kind="stable")]:
        if used[start_hit]:
            continue
        road = [int(start_hit)]
        used[start_hit] = True
        hit = int(start_hit)
        while True:
            nxt = -1
            for k in range(starts[hit], starts[hit + 1]):
                if not used[outer[k]]:
                    nxt = int(outer[k])
                    break
            if nxt < 0:
                break
            road.append(nxt)
            used[nxt] = True
            hit = nxt
        if len(road) >= min_hits:
            labels[road] = next_label
            next_label += 1
        else:
            used[road[1:]] = False  # too short: its later hits may still start or join a road
    lonely = labels < 0
    labels[lonely] = next_label + np.arange(int(lonely.sum()))
    return _compact(labels)


class Labelling:
    """Stage ``"labelling"``: ``graph.edges`` + ``graph.edge_scores`` -> ``graph.track_labels``."""

    name = "labelling"

    def __init__(self, config: LabellingConfig | None = None) -> None:
        self.config = config or LabellingConfig()

    def __call__(self, graph: HitGraph) -> HitGraph:
        if graph.edges is None or graph.edge_scores is None:
            raise ValueError("labelling needs scored edges (run the gnn stage first)")
        # the device-to-host copy belongs to this stage (and to its timing)
        edges = graph.edges.detach().cpu().numpy()
        scores = graph.edge_scores.detach().cpu().numpy()
        c = self.config
        if c.method == "cc":
            labels = connected_component_labels(graph.n_hits, edges, scores, c.cut)
        else:
            r = graph.features[:, 0].detach().cpu().numpy()  # column 0 is r (scaled)
            labels = walkthrough_labels(
                graph.n_hits, edges, scores, r, c.walk_loose_cut, c.walk_cut, c.min_hits
            )
        graph.track_labels = labels
        graph.counts["tracks"] = int(labels.max()) + 1 if len(labels) else 0
        return graph

    def __repr__(self) -> str:
        c = self.config
        if c.method == "cc":
            return f"Labelling(method='cc', cut={c.cut})"
        return (
            f"Labelling(method='walkthrough', loose_cut={c.walk_loose_cut}, "
            f"walk_cut={c.walk_cut}, min_hits={c.min_hits})"
        )
