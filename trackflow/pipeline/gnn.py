"""GNN stage: an interaction network scores each edge that survived the filter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeGuard

import torch
from torch import nn

import trackflow.config
from trackflow.errors import ConfigError
from trackflow.pipeline.filter import N_PAIR_FEATURES, hit_angles, inner_first, pair_features
from trackflow.pipeline.graph import HitGraph
from trackflow.pipeline.mlp import make_mlp
from trackflow.pipeline.triplets import AGREEMENT_FEATURES, TripletScales

GPU_BLOCK_ROWS = 1 << 20


class InteractionGNN(nn.Module):
    """Interaction network (Battaglia et al.; the acorn/Exa.TrkX variant) -> one logit per edge.

    Encoders map hit features [N, F] to node states x [N, H] and ``[x_src, x_dst]`` to edge states
    e [E, H]. Each of ``n_iterations`` message-passing steps (weights shared across steps):
    edge update ``e += edge_net([e, x_src, x_dst])``; node update
    ``x += node_net([x, sum of messages into the node, sum of messages out of it])``, with
    "into" = edges whose target is the node. The classifier reads ``[e, x_src, x_dst]``.
    Inputs: ``features`` float32 [N, F], ``edges`` int64 [2, E]; output logits float32 [E].

    ``pair_features`` (off by default, so older models load unchanged) needs hit features whose
    first four columns are ``r/r_scale, cos_phi, sin_phi, z/z_scale`` (r, z in mm): every edge is
    then oriented outwards (inner hit = source, whatever order graph building gave), so "into"
    and "out of" a hit mean from the inner and from the outer layers, and the edge encoder also
    reads the pair's physics features (dr, dphi, dz, deta, dphi/dr, z0; see
    :func:`trackflow.pipeline.filter.pair_features`).

    ``edge_score_input`` (off by default) adds the previous stage's score of each edge (the
    filter's, in (0, 1)) to the edge encoder's inputs, as logit/4: the network then starts from
    what the filter knows and learns from the neighbourhood what the filter could not see. Such
    a model is called ``model(features, edges, edge_scores [E])``; its ``uses_edge_scores`` says so.

    ``triplet_inputs`` (off by default; needs ``edge_score_input``) adds each edge's agreement with
    its neighbours (:meth:`trackflow.pipeline.triplets.TripletScales.agreement`, 4 columns) to the
    edge encoder's inputs: the model is then called with ``edge_scores`` [E, 5], the filter's
    score first; its ``uses_triplet_inputs`` says so. Summed messages cannot tell the GNN which
    of a hit's eight neighbours continues a helix; the triplet test can (issue 29).

    ``layer_norm`` and ``activation`` ("tanh" or "relu") shape the hidden blocks of every MLP
    (defaults: LayerNorm + tanh); states and messages always leave their MLP through tanh. A
    student distilled from a trained GNN runs ~2x faster per iteration on a CPU without LayerNorm
    and with ReLU (:mod:`trackflow.pipeline.training.distill`).
    """

    def __init__(
        self,
        in_features: int = 3,
        hidden: int = 64,
        n_iterations: int = 8,
        n_mlp_layers: int = 2,
        pair_features: bool = False,
        r_scale: float = 1000.0,
        z_scale: float = 1000.0,
        edge_score_input: bool = False,
        layer_norm: bool = True,
        activation: str = "tanh",
        triplet_inputs: bool = False,
    ) -> None:
        super().__init__()
        if pair_features and in_features < 4:
            raise ValueError("InteractionGNN(pair_features=True) needs features r, cos_phi, sin_phi, z first")
        if triplet_inputs and not edge_score_input:
            raise ValueError("InteractionGNN(triplet_inputs=True) needs edge_score_input=True")
        self.in_features = in_features
        self.hidden = hidden
        self.n_iterations = n_iterations
        self.pair_features = pair_features
        self.r_scale = float(r_scale)
        self.z_scale = float(z_scale)
        self.edge_score_input = edge_score_input
        self.uses_edge_scores = edge_score_input
        self.triplet_inputs = triplet_inputs
        self.uses_triplet_inputs = triplet_inputs
        # rows (edges or hits) per block at inference; a plain attribute, not in the state dict.
        # 8192 keeps a block's activations near a CPU's cache; the GNN stage raises it on CUDA
        self.inference_chunk = 8192
        h = hidden
        self.layer_norm = layer_norm
        self.activation = activation

        def mlp(n_in: int, n_out: int, output_activation: bool = True) -> nn.Sequential:
            return make_mlp(
                n_in,
                h,
                n_mlp_layers,
                n_out,
                output_activation=output_activation,
                layer_norm=layer_norm,
                activation=activation,
            )

        self.node_encoder = mlp(in_features, h)
        n_pair = N_PAIR_FEATURES if pair_features else 0
        self.n_pair = n_pair
        n_edge_inputs = int(edge_score_input) + (len(AGREEMENT_FEATURES) if triplet_inputs else 0)
        self.edge_encoder = mlp(2 * h + n_pair + n_edge_inputs, h)
        self.edge_network = mlp(3 * h, h)
        self.node_network = mlp(3 * h, h)
        self.edge_classifier = mlp(3 * h, 1, output_activation=False)

    def forward(
        self, features: torch.Tensor, edges: torch.Tensor, edge_scores: torch.Tensor | None = None
    ) -> torch.Tensor:
        # The first Linear of each edge-level MLP acts on a concatenation [e, x_src, x_dst]; it is
        # split into per-part weights so node parts are projected once per hit (N x H) and
        # gathered, instead of building [E, 3H] inputs: a third of the FLOPs and memory.
        # Without autograd (inference) edges and hits go through the MLPs in blocks of
        # ``inference_chunk`` rows: activations stay in cache (on a CPU, 2-3x faster than whole
        # tensors) and transient memory stays bounded; the result is the same.
        if self.triplet_inputs and (edge_scores is None or edge_scores.dim() != 2):
            raise ValueError(
                "this GNN reads the filter's score and the triplet agreement: edge_scores [E, 5] "
                "(the GNN stage computes them)"
            )
        source, target = edges[0], edges[1]
        if self.pair_features:
            # outwards: the result does not depend on the direction graph building gave each edge
            source, target = inner_first(features, source, target)
        n_edges = edges.shape[1]
        n_hits = features.shape[0]
        chunk = max(n_edges, n_hits) if torch.is_grad_enabled() else self.inference_chunk
        chunk = max(chunk, 1)
        # without autograd, states are updated in place (no copies of e and x per iteration)
        in_place = not torch.is_grad_enabled()
        h = self.hidden

        # each hit's phi and eta once, gathered per edge by the pair features
        angles = hit_angles(features, self.r_scale, self.z_scale) if self.pair_features else features[:, :0]
        parts: list[torch.Tensor] = []
        for start in range(0, n_hits, chunk):
            parts.append(self.node_encoder(features[start : start + chunk]))
        x = torch.cat(parts) if len(parts) > 0 else features.new_zeros((0, h))

        # a Linear's parameters; mypy reads a Module's attribute as Tensor | Module
        w, bias = self.edge_encoder[0].weight, self.edge_encoder[0].bias
        assert isinstance(w, torch.Tensor) and isinstance(bias, torch.Tensor)
        x_src = _project(x, w[:, :h], None, chunk, in_place)
        x_dst = _project(x, w[:, h : 2 * h], bias, chunk, in_place)
        parts = []
        for start in range(0, n_edges, chunk):
            src, dst = source[start : start + chunk], target[start : start + chunk]
            out = _gather_sum(x_src, x_dst, src, dst, in_place)
            if self.pair_features:
                pairs = pair_features(
                    features[src], features[dst], self.r_scale, self.z_scale, angles[src], angles[dst]
                )
                out = out + pairs @ w[:, 2 * h : 2 * h + self.n_pair].T
            if self.edge_score_input:
                score = _score_column(edge_scores, start, chunk)
                out = out + score @ w[:, 2 * h + self.n_pair :].T
            for i, layer in enumerate(self.edge_encoder):
                if i > 0:
                    out = layer(out)
            parts.append(out)
        e = torch.cat(parts) if len(parts) > 0 else x.new_zeros((0, h))

        # message sums per hit; without autograd one pair of buffers serves every iteration
        incoming = torch.zeros_like(x)
        outgoing = torch.zeros_like(x)
        for iteration in range(self.n_iterations):
            w, bias = self.edge_network[0].weight, self.edge_network[0].bias
            assert isinstance(w, torch.Tensor) and isinstance(bias, torch.Tensor)
            e_w = w[:, :h].T
            x_src = _project(x, w[:, h : 2 * h], None, chunk, in_place)
            x_dst = _project(x, w[:, 2 * h :], bias, chunk, in_place)
            if iteration > 0:
                if in_place:
                    incoming.zero_()
                    outgoing.zero_()
                else:
                    incoming = torch.zeros_like(x)
                    outgoing = torch.zeros_like(x)
            parts = []
            for start in range(0, n_edges, chunk):
                src, dst = source[start : start + chunk], target[start : start + chunk]
                e_chunk = e[start : start + chunk]
                out = _gather_sum(x_src, x_dst, src, dst, in_place)
                if in_place:
                    out.addmm_(e_chunk, e_w)  # accumulates in place: no bias copy, no temporary
                else:
                    out = out + e_chunk @ e_w
                for i, layer in enumerate(self.edge_network):
                    if i > 0:
                        out = layer(out)
                if in_place:
                    e_chunk += out  # rows of this block only: nothing else reads them later
                    out = e_chunk
                else:
                    out = e_chunk + out
                    parts.append(out)
                # messages summed per hit while the block is still in cache
                incoming.index_add_(0, dst, out)
                outgoing.index_add_(0, src, out)
            if not in_place and len(parts) > 0:
                e = torch.cat(parts)
            parts = []
            for start in range(0, n_hits, chunk):
                stop = start + chunk
                node_in = torch.cat([x[start:stop], incoming[start:stop], outgoing[start:stop]], 1)
                if in_place:
                    x[start:stop] += self.node_network(node_in)
                else:
                    parts.append(x[start:stop] + self.node_network(node_in))
            if not in_place and len(parts) > 0:
                x = torch.cat(parts)

        w, bias = self.edge_classifier[0].weight, self.edge_classifier[0].bias
        assert isinstance(w, torch.Tensor) and isinstance(bias, torch.Tensor)
        e_w = w[:, :h].T
        x_src = _project(x, w[:, h : 2 * h], None, chunk, in_place)
        x_dst = _project(x, w[:, 2 * h :], bias, chunk, in_place)
        logits: list[torch.Tensor] = []
        for start in range(0, n_edges, chunk):
            src, dst = source[start : start + chunk], target[start : start + chunk]
            out = _gather_sum(x_src, x_dst, src, dst, in_place)
            if in_place:
                out.addmm_(e[start : start + chunk], e_w)
            else:
                out = out + e[start : start + chunk] @ e_w
            for i, layer in enumerate(self.edge_classifier):
                if i > 0:
                    out = layer(out)
            logits.append(out.squeeze(1))
        return torch.cat(logits) if len(logits) > 0 else x.new_zeros((0,))

    def reference_forward(
        self, features: torch.Tensor, edges: torch.Tensor, edge_scores: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The textbook form of :meth:`forward` (concatenated inputs, no chunks): for tests."""
        source, target = edges[0], edges[1]
        if self.pair_features:
            source, target = inner_first(features, source, target)
        x = self.node_encoder(features)
        inputs = [x[source], x[target]]
        if self.pair_features:
            inputs.append(pair_features(features[source], features[target], self.r_scale, self.z_scale))
        if self.edge_score_input:
            inputs.append(_score_column(edge_scores, 0, source.shape[0]))
        e = self.edge_encoder(torch.cat(inputs, dim=1))
        for _ in range(self.n_iterations):
            e = e + self.edge_network(torch.cat([e, x[source], x[target]], dim=1))
            incoming = torch.zeros_like(x).index_add_(0, target, e)
            outgoing = torch.zeros_like(x).index_add_(0, source, e)
            x = x + self.node_network(torch.cat([x, incoming, outgoing], dim=1))
        return self.edge_classifier(torch.cat([e, x[source], x[target]], dim=1)).squeeze(1)


def _project(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, chunk: int, blocked: bool
) -> torch.Tensor:
    """``x @ weight.T (+ bias)``: one column block of a Linear applied to hit states [N, H].

    ``blocked`` (inference): ``chunk`` rows at a time into one output, so each block's rows
    stay in cache (3.5x faster than one product over a 94k-row tensor on a CPU)."""
    if not blocked:
        out = x @ weight.T
        return out if bias is None else out + bias
    out = x.new_empty((x.shape[0], weight.shape[0]))
    for start in range(0, x.shape[0], chunk):
        rows = out[start : start + chunk]
        if bias is None:
            torch.mm(x[start : start + chunk], weight.T, out=rows)
        else:
            torch.addmm(bias, x[start : start + chunk], weight.T, out=rows)
    return out


def _gather_sum(
    x_src: torch.Tensor, x_dst: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, in_place: bool
) -> torch.Tensor:
    """``x_src[src] + x_dst[dst]``: the two hits' parts of an edge MLP's first layer.

    index_select, not advanced indexing: the same rows, but gathers took 15 % of the GNN's CPU
    time through ``x[idx]`` and a third of that through index_select."""
    out = x_src.index_select(0, src)
    if in_place:
        return out.add_(x_dst.index_select(0, dst))
    return out + x_dst.index_select(0, dst)


def _score_column(edge_scores: torch.Tensor | None, start: int, size: int) -> torch.Tensor:
    """logit(score)/4 of edges ``start .. start+size`` as a column [size, 1] (scores in (0, 1));
    ``edge_scores`` [E, 1 + K]: that column, then the K further edge inputs as given."""
    if edge_scores is None:
        raise ValueError("this GNN reads the filter's edge scores: call it with edge_scores")
    part = edge_scores[start : start + size]
    if part.dim() == 2:
        first = torch.logit(part[:, :1].clamp(1e-4, 1.0 - 1e-4)) / 4.0
        return torch.cat([first, part[:, 1:]], dim=1)
    return (torch.logit(part.clamp(1e-4, 1.0 - 1e-4)) / 4.0).unsqueeze(1)


@dataclass
class GNNConfig:
    """``cut``: edges with GNN score > cut count as ``edges_gnn`` (track candidates' edges).

    The stage keeps every edge with its score, so labelling can choose its own cut(s)."""

    cut: float = field(default_factory=lambda: float(trackflow.config.get("pipeline.gnn.cut", 0.5)))

    def __post_init__(self) -> None:
        if not 0.0 <= self.cut < 1.0:
            raise ConfigError(f"pipeline.gnn.cut: must be in [0, 1), got {self.cut}")


class Blocked(Protocol):
    """A model that runs in blocks of ``inference_chunk`` rows (edges or hits) at inference."""

    inference_chunk: int


def _is_blocked(candidate: object) -> TypeGuard[Blocked]:
    return hasattr(candidate, "inference_chunk")


def chunked_module(model: nn.Module) -> Blocked | None:
    """The InteractionGNN whose ``inference_chunk`` sets its block size: ``model`` itself, or the
    ``gnn`` inside a wrapper (the shipped EmbeddedGNN, also as TorchScript); None for other models."""
    for candidate in (model, getattr(model, "gnn", None)):
        if candidate is not None and _is_blocked(candidate):
            return candidate
    return None


class GNN:
    """Stage ``"gnn"``: score the filtered edges with an InteractionGNN or any TorchScript model
    called as ``model(features [N, F] float32, edges [2, E] int64) -> logits [E]`` (as the
    Exa.TrkX ``gnn.pt``). Sets ``graph.edge_scores`` = sigmoid(logits).

    ``share_embedding`` (see :func:`shares_embedding`): the model is also given the embedding
    stage's output, ``model(features, edges, edge_scores or None, embedding)``.

    ``triplets``: the triplet scales a model with ``uses_triplet_inputs`` reads its edges'
    agreement with (:meth:`~trackflow.pipeline.triplets.TripletScales.agreement`): the filter
    stage's, which the :class:`~trackflow.pipeline.Pipeline` hands over.
    """

    name = "gnn"

    def __init__(
        self, model: nn.Module, config: GNNConfig | None = None, triplets: TripletScales | None = None
    ) -> None:
        self.model = model.eval()
        self.config = config or GNNConfig()
        # set by the Pipeline when the model takes the embedding stage's output (an EmbeddedGNN
        # whose embedding network has the embedding stage's weights): it is then not recomputed
        self.share_embedding = False
        self.triplets = triplets
        self.uses_triplet_inputs = bool(getattr(model, "uses_triplet_inputs", False))

    def edge_inputs(self, graph: HitGraph) -> torch.Tensor | None:
        """What the model reads per edge besides the hits: None, the filter's scores [E], or
        those and the edges' triplet agreement [E, 5] (``uses_triplet_inputs``)."""
        if not bool(getattr(self.model, "uses_edge_scores", False)):
            return None
        if graph.edge_scores is None:
            raise ValueError("this GNN reads the filter's scores: run the filter stage first")
        if not self.uses_triplet_inputs:
            return graph.edge_scores
        if self.triplets is None:
            raise ConfigError(
                "this GNN reads triplet agreement, but the filter stage has no triplet scales "
                "(pipeline.filter.triplets in the manifest)"
            )
        if graph.layers is None or graph.cylindrical is None:
            raise ValueError(
                f"event {graph.event_id}: the GNN reads triplet agreement, which needs the hits' "
                "layers and positions (volume_id, layer_id, x, y, z)"
            )
        assert graph.edges is not None
        agreement = self.triplets.agreement(graph.layers, graph.cylindrical, graph.edges.cpu().numpy())
        scores = graph.edge_scores.unsqueeze(1)
        return torch.cat([scores, torch.from_numpy(agreement).to(scores.device)], dim=1)

    def logits(self, graph: HitGraph) -> torch.Tensor:
        """GNN logits [E] for the edges of ``graph``."""
        assert graph.edges is not None
        if graph.n_edges == 0:
            return torch.zeros(0, dtype=torch.float32, device=graph.device)
        chunked = chunked_module(self.model)
        if graph.device.type == "cuda" and chunked is not None:
            # a GPU wants big blocks (few kernel launches); memory allows a million edges
            chunked.inference_chunk = GPU_BLOCK_ROWS
        inputs = self.edge_inputs(graph)
        with torch.inference_mode():
            if self.share_embedding and graph.embedding is not None:
                # the embedding stage's output: the model would otherwise compute it again
                return self.model(graph.features, graph.edges, inputs, graph.embedding)
            if inputs is not None:
                return self.model(graph.features, graph.edges, inputs)
            return self.model(graph.features, graph.edges)

    def __call__(self, graph: HitGraph) -> HitGraph:
        if graph.edges is None:
            raise ValueError("gnn needs the graph_building (and filter) stage to have run")
        graph.edge_scores = torch.sigmoid(self.logits(graph))
        graph.counts["edges_gnn"] = int((graph.edge_scores > self.config.cut).sum())
        return graph

    def __repr__(self) -> str:
        return f"GNN({type(self.model).__name__}, cut={self.config.cut})"


def shares_embedding(gnn_model: nn.Module, embedding_model: nn.Module | None) -> bool:
    """Whether ``gnn_model`` takes a precomputed embedding (``reads_embedding``, an EmbeddedGNN)
    and its own embedding network has exactly ``embedding_model``'s weights, so the embedding
    stage's output is what it would compute itself."""
    inner = getattr(gnn_model, "embedding", None)
    if not getattr(gnn_model, "reads_embedding", False) or inner is None or embedding_model is None:
        return False
    mine, theirs = inner.state_dict(), embedding_model.state_dict()
    return mine.keys() == theirs.keys() and all(
        mine[k].shape == theirs[k].shape and torch.equal(mine[k].cpu(), theirs[k].cpu()) for k in mine
    )
