"""Filter stage: an MLP scores every candidate edge from its two hits; edges below a cut go."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import trackflow.config
from trackflow.errors import ConfigError
from trackflow.pipeline.graph import HitGraph
from trackflow.pipeline.mlp import block_rows, make_mlp
from trackflow.pipeline.triplets import TripletScales


class FilterNet(nn.Module):
    """Per-edge logit from the features of the two hits of the edge.

    Inputs: ``features`` float32 [N, F], ``edges`` int64 [2, E] (source, target), and, when
    ``use_embedding_distance`` is set, ``embedding`` float32 [N, D]. The MLP sees
    ``[x_source, x_target]`` (2F columns), plus the Euclidean distance of the two hits in the
    embedding space (1 column) when enabled. Output: logits float32 [E].

    ``pair_features`` (off by default, so older models load unchanged) adds 6 physics columns
    per edge, from hit features whose first four columns are ``r/r_scale, cos_phi, sin_phi,
    z/z_scale`` (r, z in mm): dr, dphi (wrapped to (-pi, pi]), dz, deta, the curvature proxy
    dphi/dr and the beam-line intercept z0 = z_in - r_in * dz/dr (see :func:`pair_features`).
    Each pair is ordered by r (inner hit first) for these and for the two hits' own columns,
    so the score does not depend on the edge's direction or on the order of the hits.

    ``layer_norm`` and ``activation`` ("tanh" or "relu") shape the MLP's hidden blocks (defaults:
    LayerNorm + tanh, the Exa.TrkX recipe); a distilled student is cheaper per pair without
    LayerNorm and with ReLU (:mod:`trackflow.pipeline.training.distill`).
    """

    def __init__(
        self,
        in_features: int = 3,
        hidden: int = 256,
        n_layers: int = 4,
        use_embedding_distance: bool = False,
        pair_features: bool = False,
        r_scale: float = 1000.0,
        z_scale: float = 1000.0,
        layer_norm: bool = True,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if pair_features and in_features < 4:
            raise ValueError("FilterNet(pair_features=True) needs features r, cos_phi, sin_phi, z first")
        self.in_features = in_features
        self.use_embedding_distance = use_embedding_distance
        self.pair_features = pair_features
        self.r_scale = float(r_scale)
        self.z_scale = float(z_scale)
        n_inputs = 2 * in_features + int(use_embedding_distance) + N_PAIR_FEATURES * int(pair_features)
        self.network = make_mlp(n_inputs, hidden, n_layers, 1, layer_norm=layer_norm, activation=activation)

    def forward(
        self,
        features: torch.Tensor,
        edges: torch.Tensor,
        embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        source, target = edges[0], edges[1]
        if self.pair_features:
            # inner hit first: the same pair scores the same whichever way the edge points
            source, target = inner_first(features, source, target)
        # index_select: the same rows as features[source], gathered ~3x faster on a CPU
        inner, outer = features.index_select(0, source), features.index_select(0, target)
        inputs = [inner, outer]
        if self.pair_features:
            angles = hit_angles(features, self.r_scale, self.z_scale)
            a_in, a_out = angles.index_select(0, source), angles.index_select(0, target)
            inputs.append(pair_features(inner, outer, self.r_scale, self.z_scale, a_in, a_out))
        if self.use_embedding_distance:
            if embedding is None:
                raise ValueError("FilterNet(use_embedding_distance=True) needs the embedding")
            diff = embedding.index_select(0, source) - embedding.index_select(0, target)
            inputs.append(diff.pow(2).sum(dim=1, keepdim=True).sqrt())
        return self.network(torch.cat(inputs, dim=1)).squeeze(1)


#: columns :func:`pair_features` adds
N_PAIR_FEATURES = 6


def inner_first(
    features: torch.Tensor, source: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge ends reordered so the first is the hit at smaller r (``features`` column 0 is r):
    models that read pair features score a pair the same whichever way the edge points."""
    swap = features[source, 0] > features[target, 0]
    return torch.where(swap, target, source), torch.where(swap, source, target)


def hit_angles(features: torch.Tensor, r_scale: float, z_scale: float) -> torch.Tensor:
    """[N, 2]: each hit's azimuth phi (rad) and pseudorapidity eta = asinh(z / r) from scaled hit
    features (columns ``r/r_scale, cos_phi, sin_phi, z/z_scale``). Computed once per hit and
    gathered per pair, it spares :func:`pair_features` an atan2 and an asinh per pair end
    (~25 per hit on a full event); the values are the same."""
    r, z = features[:, 0] * r_scale, features[:, 3] * z_scale
    return torch.stack(
        [torch.atan2(features[:, 2], features[:, 1]), torch.asinh(z / r.clamp(min=1.0))], dim=1
    )


def pair_features(
    inner: torch.Tensor,
    outer: torch.Tensor,
    r_scale: float,
    z_scale: float,
    angles_inner: torch.Tensor | None = None,
    angles_outer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Physics features [E, 6] of hit pairs from scaled hit features (columns ``r/r_scale,
    cos_phi, sin_phi, z/z_scale``, r and z in mm), ``inner`` the hit at smaller r.
    ``angles_inner``, ``angles_outer`` [E, 2]: the two hits' :func:`hit_angles`, when gathered
    already (else computed here).

    Columns: dr (m), dphi (rad, wrapped to (-pi, pi]), dz (m), deta, dphi/dr (rad/m, clipped to
    +-10: a 1 GeV track in 2 T bends about 0.3 rad/m), z0 = z_in - r_in * dz/dr (m, the pair's
    intercept with the beam line; true pairs sit within the vertex spread of about +-0.15 m;
    clipped to +-3 m). dr is floored at 1 mm for the ratios: pairs on one endcap disk have dr ~ 0.
    """
    r_a, r_b = inner[:, 0] * r_scale, outer[:, 0] * r_scale  # mm
    z_a, z_b = inner[:, 3] * z_scale, outer[:, 3] * z_scale
    if angles_inner is None or angles_outer is None:
        angles_inner = hit_angles(inner, r_scale, z_scale)
        angles_outer = hit_angles(outer, r_scale, z_scale)
    dphi = angles_outer[:, 0] - angles_inner[:, 0]
    dphi = dphi - 2.0 * math.pi * torch.ceil((dphi - math.pi) / (2.0 * math.pi))  # (-pi, pi]
    dr, dz = r_b - r_a, z_b - z_a
    dr_safe = dr.clamp(min=1.0)
    deta = angles_outer[:, 1] - angles_inner[:, 1]
    curvature = (dphi / dr_safe * 1000.0).clamp(-10.0, 10.0)
    z0 = ((z_a - r_a * dz / dr_safe) / 1000.0).clamp(-3.0, 3.0)
    return torch.stack([dr / 1000.0, dphi, dz / 1000.0, deta, curvature, z0], dim=1)


def _cfg(key: str, default: Any) -> Any:
    return trackflow.config.get(f"pipeline.filter.{key}", default)


@dataclass
class FilterConfig:
    """``cut``: keep edges with sigmoid(logit) > cut; ``chunk_size``: edges scored at once, which
    bounds memory on 100k-hit events (activations are chunk_size x hidden floats per layer).

    ``triplets``: the triplet-agreement scales and cuts learned in training
    (:meth:`trackflow.pipeline.triplets.TripletScales.to_dict`), or None: after the MLP's cut,
    edges of the barrel that agree with none of their neighbours as one helix would are dropped
    (:mod:`trackflow.pipeline.triplets`). ``triplet_cut``: one best-chi2 cut for every volume
    the scales prune, instead of the learned per-volume cuts (None: the learned ones).
    """

    cut: float = field(default_factory=lambda: float(_cfg("cut", 0.2)))
    chunk_size: int = field(default_factory=lambda: int(_cfg("chunk_size", 200_000)))
    triplets: dict | None = None
    triplet_cut: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.cut < 1.0:
            raise ConfigError(f"pipeline.filter.cut: must be in [0, 1), got {self.cut}")
        if self.chunk_size < 1:
            raise ConfigError(f"pipeline.filter.chunk_size: must be >= 1, got {self.chunk_size}")
        if self.triplet_cut is not None and not self.triplet_cut > 0:
            raise ConfigError(f"pipeline.filter.triplet_cut: must be > 0, got {self.triplet_cut}")
        if self.triplets is not None:
            self.triplet_scales()  # a malformed table fails here, naming the setting

    def triplet_scales(self) -> TripletScales | None:
        """The triplet pruning this config asks for (with ``triplet_cut`` applied), or None."""
        if self.triplets is None:
            return None
        try:
            scales = TripletScales.from_dict(self.triplets)
        except ConfigError as error:
            raise ConfigError(f"pipeline.filter.triplets: {error}") from error
        if self.triplet_cut is not None:
            scales = scales.with_cuts(dict.fromkeys(scales.volumes, self.triplet_cut))
        return scales


def apply_cut(edges: torch.Tensor, logits: torch.Tensor, cut: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges [2, E'] and their scores [E'] (sigmoid of ``logits``) with score > ``cut``."""
    scores = torch.sigmoid(logits)
    keep = scores > cut
    return edges[:, keep], scores[keep]


class EdgeFilter:
    """Stage ``"filter"``: score graph-building edges with a FilterNet (or a TorchScript model
    with the same call, ``(x [N, F], edge_index [2, E]) -> logits [E]``), in chunks, and keep
    those above the cut.

    Sets ``graph.edges`` to the kept edges and ``graph.edge_scores`` to their filter scores.
    ``model`` None: no filter, every edge is kept with score 1 (a layer-map graph feeding the
    GNN directly, as ACTS runs a module map with a GNN).
    """

    name = "filter"

    def __init__(self, model: nn.Module | None, config: FilterConfig | None = None) -> None:
        self.model = None if model is None else model.eval()
        self.config = config or FilterConfig()
        self.uses_embedding = bool(getattr(model, "use_embedding_distance", False))
        self.triplets = self.config.triplet_scales()

    def logits(self, graph: HitGraph) -> torch.Tensor:
        """Filter logits [E] for every edge of ``graph``, computed chunk by chunk."""
        assert graph.edges is not None
        if self.model is None:
            return torch.full((graph.n_edges,), torch.inf, dtype=torch.float32, device=graph.device)
        chunks = []
        # a FilterNet blocks its MLP by rows itself (cache-sized blocks, trackflow.pipeline.mlp):
        # it gets whole chunks, so the pair features are computed in a few large vectorised
        # calls, not ~800 small ones per full event (same logits; 1.4x faster on average over 3
        # alternating runs on a full event, loaded 2-core machine); other models (e.g.
        # TorchScript) get cache-sized blocks
        blocked_inside = isinstance(self.model, FilterNet)
        rows = self.config.chunk_size if blocked_inside else block_rows(graph.device, self.config.chunk_size)
        with torch.inference_mode():
            for start in range(0, graph.n_edges, rows):
                edges = graph.edges[:, start : start + rows]
                if self.uses_embedding:
                    chunks.append(self.model(graph.features, edges, graph.embedding))
                else:
                    chunks.append(self.model(graph.features, edges))
        if not chunks:
            return torch.zeros(0, dtype=torch.float32, device=graph.device)
        return torch.cat(chunks)

    def __call__(self, graph: HitGraph) -> HitGraph:
        if graph.edges is None:
            raise ValueError("filter needs the graph_building stage to have run")
        graph.edges, graph.edge_scores = apply_cut(graph.edges, self.logits(graph), self.config.cut)
        if self.triplets is not None:
            graph.counts["edges_filter_mlp"] = graph.n_edges
            graph = prune_triplets(graph, self.triplets)
        graph.counts["edges_filter"] = graph.n_edges
        return graph

    def __repr__(self) -> str:
        c = self.config
        model = type(self.model).__name__ if self.model is not None else None
        triplets = "" if self.triplets is None else f", triplet_cuts={self.triplets.chi2_cut}"
        return f"EdgeFilter({model}, cut={c.cut}, chunk_size={c.chunk_size}{triplets})"


def prune_triplets(graph: HitGraph, scales: TripletScales) -> HitGraph:
    """``graph`` without the edges that agree with none of their neighbours (``scales.keep``)."""
    if graph.edges is None or graph.edge_scores is None:
        raise ValueError("triplet pruning needs the filter's edges and scores")
    if graph.layers is None or graph.cylindrical is None:
        raise ValueError(
            f"event {graph.event_id}: triplet pruning needs the hits' layers and positions "
            "(volume_id, layer_id, x, y, z); a graph made from features alone has none"
        )
    keep = scales.keep(graph.layers, graph.cylindrical, graph.edges.cpu().numpy())
    mask = torch.from_numpy(keep).to(graph.edges.device)
    graph.edges, graph.edge_scores = graph.edges[:, mask], graph.edge_scores[mask]
    return graph
