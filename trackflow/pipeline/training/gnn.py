"""GNN training: an interaction network on the edges the filter keeps.

Full 100k-hit events give ~10⁶ filtered edges, too many to back-propagate through 8 message-
passing steps in a few GiB; each step therefore trains on the hits of one sector in phi and the
edges among them (both ends inside, so every hit keeps the neighbours it has at inference except
at the sector's borders). Sectors are re-drawn at random each step, so borders move around.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trackflow.errors import ConfigError
from trackflow.metrics import SECONDARY_MIN_R
from trackflow.pipeline.gnn import InteractionGNN
from trackflow.pipeline.training.edges import EdgeSet, bce_loss, edge_weights, target_weights
from trackflow.pipeline.training.loop import Optimisation
from trackflow.pipeline.triplets import AGREEMENT_FEATURES


@dataclass
class GNNTrainingConfig:
    """Hyper-parameters of GNN training.

    The defaults are the first part of the shipped model's recipe, sized for CPU training in
    minutes: hidden 32, 4 message-passing iterations, 3000 steps of ~30k edges. Per step that is
    4x cheaper than hidden 64 x 8 iterations, and it reached a lower loss in the same CPU time:
    the filter score and the pair features give the network a head start. The shipped GNN then
    continues from those weights with 8 iterations (the InteractionGNN default; ``--gnn-from``),
    and again on the pair-feature filter's graphs: the runs are listed in
    :mod:`trackflow.pipeline.training`.
    """

    hidden: int = 32
    n_iterations: int = 4
    n_mlp_layers: int = 2
    epochs: int = 15
    steps_per_epoch: int = 200
    max_edges_per_step: int = 30000  # sector width is chosen to give about this many edges
    learning_rate: float = 4e-3
    # physics pair features in the edge encoder and edges oriented outwards (see InteractionGNN):
    # needs hit features r, cos_phi, sin_phi, z first
    pair_features: bool = True
    r_scale: float = 1000.0  # mm, the feature scale of r
    z_scale: float = 1000.0  # mm, the feature scale of z
    max_grad_norm: float = 1.0  # gradient clipping: sums over many neighbours can spike
    # the filter's score of each edge as one more edge input (see InteractionGNN)
    edge_score_input: bool = True
    pos_weight: float = 1.0
    pt_min: float = 0.5  # GeV; true edges of slower particles weigh less
    low_pt_weight: float = 0.3
    # what the GNN learns to find: "same_particle" (any two hits of one particle) or
    # "consecutive" (truth edges; true edges that skip a hit weigh 0, fakes fake_weight)
    targets: str = "same_particle"
    fake_weight: float = 1.0
    # targets of particles produced more than displaced_min_r mm from the beam line weigh
    # displaced_weight times as much ("consecutive" targets only)
    displaced_weight: float = 1.0
    displaced_min_r: float = SECONDARY_MIN_R
    # each edge's triplet agreement as 4 more edge inputs (InteractionGNN.triplet_inputs)
    triplet_inputs: bool = False

    def __post_init__(self) -> None:
        if self.displaced_weight < 0 or self.displaced_min_r < 0:
            raise ConfigError(
                f"training.gnn: displaced_weight ({self.displaced_weight}) and displaced_min_r "
                f"({self.displaced_min_r} mm) must be >= 0"
            )
        if self.targets not in TARGETS:
            raise ConfigError(f"training.gnn.targets: {self.targets!r} is not one of {TARGETS}")

    def to_dict(self) -> dict:
        return asdict(self)


#: what a GNN may learn to find (:class:`GNNTrainingConfig`)
TARGETS = ("same_particle", "consecutive")


@torch.no_grad()
def gnn_scores(model: torch.nn.Module, edge_set: EdgeSet) -> np.ndarray:
    """Sigmoid scores [E] of every edge of the whole event."""
    model.eval()
    if edge_set.edges.shape[1] == 0:
        return np.zeros(0, np.float32)
    return torch.sigmoid(_call(model, edge_set.event.features, edge_set.edges, edge_set)).numpy()


def _call(
    model: torch.nn.Module, features: torch.Tensor, edges: np.ndarray, edge_set: EdgeSet
) -> torch.Tensor:
    """``model(features, edges[, edge inputs])``: the filter's scores (and the triplet agreement)
    only to a model that reads them."""
    if getattr(model, "uses_edge_scores", False):
        inputs = edge_set.edge_inputs()
        if inputs is None:
            raise ValueError("the GNN reads filter scores but the edge set has none")
        if bool(getattr(model, "uses_triplet_inputs", False)) != (inputs.ndim == 2):
            raise ValueError("the GNN's triplet inputs and the edge set's agreement must go together")
        return model(features, torch.from_numpy(edges), torch.from_numpy(inputs))
    return model(features, torch.from_numpy(edges))


def sector(edge_set: EdgeSet, phi: np.ndarray, max_edges: int, rng: np.random.Generator) -> EdgeSet:
    """The edges with both hits in a random phi sector holding about ``max_edges`` edges."""
    n_edges = edge_set.edges.shape[1]
    if n_edges <= max_edges:
        return edge_set
    width = 2 * np.pi * max_edges / n_edges
    start = rng.uniform(-np.pi, np.pi)
    inside = np.mod(phi - start, 2 * np.pi) < width
    return edge_set.subset(inside[edge_set.edges[0]] & inside[edge_set.edges[1]])


def inner_gnn(model: nn.Module) -> Any:
    """The :class:`InteractionGNN` of ``model``: ``model`` itself, or the ``gnn`` of an
    :class:`EmbeddedGNN`. Typed Any: in a TorchScript model its attributes (``hidden``,
    ``n_iterations``, ...) exist only at run time."""
    return getattr(model, "gnn", model)


def gnn_architecture(model: nn.Module) -> dict[str, Any]:
    """The shape settings of a trained GNN (an :class:`InteractionGNN`, or an
    :class:`EmbeddedGNN` / its TorchScript, whose ``gnn`` it is): what a warm start must match."""
    gnn = inner_gnn(model)
    # Linear weights are the 2-D ones (LayerNorm's are 1-D); make_mlp adds an output layer
    state = gnn.state_dict()
    n_mlp_layers = sum(1 for k, v in state.items() if k.startswith("edge_network.") and v.dim() == 2) - 1
    return {
        "hidden": int(gnn.hidden),
        "n_mlp_layers": n_mlp_layers,
        "pair_features": bool(gnn.pair_features),
        "edge_score_input": bool(gnn.edge_score_input),
        # models scripted before these options had LayerNorm + tanh
        "layer_norm": bool(getattr(gnn, "layer_norm", True)),
        "activation": str(getattr(gnn, "activation", "tanh")),
        "triplet_inputs": bool(getattr(gnn, "triplet_inputs", False)),
    }


def _warm_start(model: InteractionGNN, init: nn.Module, rng: torch.Generator | None = None) -> None:
    """Copy a trained GNN's weights into ``model``. The message-passing weights are shared
    across iterations, so ``model`` may run more (or fewer) iterations than ``init`` did. A
    ``model`` k times as wide as ``init`` (k an integer) starts from ``init`` widened by
    :func:`widen_state`: the same function, with room to learn more."""
    state = init.state_dict()
    if any(k.startswith("gnn.") for k in state):  # an EmbeddedGNN: its embedding stays outside
        state = {k[4:]: v for k, v in state.items() if k.startswith("gnn.")}
    wanted, given = gnn_architecture(model), gnn_architecture(init)
    # hit inputs too: features only, or features + embedding (EmbeddedGNN)
    wanted["in_features"] = model.in_features
    given["in_features"] = int(inner_gnn(init).in_features)
    narrow, wide = given["hidden"], wanted["hidden"]
    if wanted["triplet_inputs"] and not given["triplet_inputs"]:
        state = with_triplet_inputs(state)
        given["triplet_inputs"] = True
    if wide != narrow and wide % narrow == 0 and {**wanted, "hidden": narrow} == given:
        state = widen_state(state, narrow, wide, rng)
    elif wanted != given:
        raise ConfigError(f"training.gnn: the warm-start GNN has {given}, the training config {wanted}")
    model.load_state_dict(state)


# Inputs of each MLP's first Linear, in order: "h" a hidden-state block (node or edge state),
# "rest" the other inputs, whatever their number (hit features, pair features, filter score). Later Linears
# read one hidden block; every Linear writes a hidden block except the classifier's last.
_FIRST_INPUTS = {
    "node_encoder": ("rest",),
    "edge_encoder": ("h", "h", "rest"),
    "edge_network": ("h", "h", "h"),
    "node_network": ("h", "h", "h"),
    "edge_classifier": ("h", "h", "h"),
}


def with_triplet_inputs(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict of an :class:`InteractionGNN` that reads the filter's score, given the
    triplet agreement inputs too (``triplet_inputs``) at weight 0: the same function, which
    fine-tuning then teaches to use them."""
    out = dict(state)
    weight = state["edge_encoder.0.weight"]
    zeros = weight.new_zeros((weight.shape[0], len(AGREEMENT_FEATURES)))
    out["edge_encoder.0.weight"] = torch.cat([weight, zeros], dim=1)
    return out


def widen_state(
    state: dict[str, torch.Tensor],
    narrow: int,
    wide: int,
    rng: torch.Generator | None = None,
    noise: float = 1e-3,
) -> dict[str, torch.Tensor]:
    """The state dict of an :class:`InteractionGNN` of width ``narrow`` made ``wide`` (a multiple)
    wide computing the same function (Net2WiderNet, Chen et al. 2016): every hidden unit is
    repeated k = wide / narrow times and the weights that read hidden blocks are divided by k.
    LayerNorm sees the same mean and variance over a vector repeated k times, and message sums of
    repeated vectors are repeated, so every layer's output is the old one repeated. Copies start
    identical and would stay so (equal gradients); ``noise`` (relative to each weight matrix's
    standard deviation) on the repeated copies breaks the tie; on the shipped GNN and a real event's
    graph that moves the edge probabilities by at most ~0.02."""
    k = wide // narrow
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        mlp, index, _ = name.split(".")
        layer = int(index)
        if value.dim() == 1:
            # a hidden block's bias or LayerNorm weight; the classifier's last bias is one logit
            out[name] = value.repeat(k) if value.shape[0] == narrow else value.clone()
            continue
        rows = value.repeat(k, 1) if value.shape[0] == narrow else value
        first = layer == 0
        blocks = _FIRST_INPUTS[mlp] if first else ("h",)
        n_rest = rows.shape[1] - narrow * blocks.count("h")
        columns, at = [], 0
        for block in blocks:
            width = narrow if block == "h" else n_rest
            part = rows[:, at : at + width]
            columns.append(part.repeat(1, k) / k if block == "h" else part)
            at += width
        widened = torch.cat(columns, dim=1)
        if k > 1 and noise > 0:
            jitter = torch.randn(widened.shape, generator=rng) * noise * float(value.std())
            jitter[: value.shape[0] if value.shape[0] == narrow else 0] = 0  # first copy exact
            widened = widened + jitter
        out[name] = widened.contiguous()
    return out


def train_gnn(
    edge_sets: list[EdgeSet],
    phis: list[np.ndarray],
    config: GNNTrainingConfig,
    seed: int = 0,
    init: nn.Module | None = None,
    checkpoint: Path | None = None,
    fingerprint: Any = None,
) -> tuple[InteractionGNN, list[float]]:
    """Train an :class:`InteractionGNN` on filtered edges; ``phis``: hit phi (rad) per event.
    ``init``: a trained GNN to start from (fine-tuning, e.g. with more iterations).
    ``checkpoint``: written after every epoch; a run with the same ``fingerprint`` (and config)
    resumes from it (:class:`~trackflow.pipeline.training.loop.Optimisation`)."""
    torch.manual_seed(seed)
    model = InteractionGNN(
        in_features=edge_sets[0].event.features.shape[1],
        hidden=config.hidden,
        n_iterations=config.n_iterations,
        n_mlp_layers=config.n_mlp_layers,
        pair_features=config.pair_features,
        r_scale=config.r_scale,
        z_scale=config.z_scale,
        edge_score_input=config.edge_score_input,
        triplet_inputs=config.triplet_inputs,
    )
    if init is not None:
        _warm_start(model, init, torch.Generator().manual_seed(seed))
    fit = Optimisation(
        "gnn",
        model,
        config.learning_rate,
        config.epochs * config.steps_per_epoch,
        max_grad_norm=config.max_grad_norm,
        checkpoint=checkpoint,
        fingerprint=(fingerprint, config.to_dict(), seed),
    )
    # unweighted classes: the cut is then chosen for purity, which weighting would blur
    pos_weight = config.pos_weight
    for epoch in range(fit.resume(), config.epochs):
        # each epoch's draws from (seed, epoch): a resumed run draws what the whole one would have
        rng = np.random.default_rng([seed, epoch])
        model.train()
        order = np.resize(rng.permutation(len(edge_sets)), config.steps_per_epoch)
        for i in order:
            part = sector(edge_sets[i], phis[i], config.max_edges_per_step, rng)
            if part.edges.shape[1] == 0:
                continue
            # only the hits of the sector go through the network
            hits, inverse = np.unique(part.edges.reshape(-1), return_inverse=True)
            feats = part.event.features[torch.from_numpy(hits)]
            edges = inverse.reshape(2, -1)
            if config.targets == "consecutive":
                if part.target is None:
                    raise ValueError("training.gnn.targets consecutive: the edge set has no targets")
                y = torch.from_numpy(part.target.astype(np.float32))
                w = torch.from_numpy(
                    target_weights(
                        part.y,
                        part.target,
                        part.pt,
                        config.pt_min,
                        config.low_pt_weight,
                        config.fake_weight,
                        part.vertex_r() > config.displaced_min_r,
                        config.displaced_weight,
                    )
                )
            else:
                y = torch.from_numpy(part.y.astype(np.float32))
                w = torch.from_numpy(edge_weights(part.y, part.pt, config.pt_min, config.low_pt_weight))
            fit.step(bce_loss(_call(model, feats, edges, part), y, w, pos_weight))
        fit.end_epoch(epoch, config.epochs)
    model.eval()
    return model, fit.losses


class EmbeddedGNN(nn.Module):
    """An InteractionGNN whose node inputs are the hit features *and* the hit's embedding.

    Called as the GNN stage calls any model, ``(features [N, F], edges [2, E]) -> logits [E]``: the
    (trained, frozen) embedding network runs inside, so the GNN starts from the metric the
    embedding learned (same-particle hits close) instead of learning it again from r, phi, z.
    ``embedding`` [N, D] (optional): the same network's output, already computed by the pipeline's
    embedding stage (the GNN was trained on that embedding: training checks the sha256), so it is
    not computed twice (``reads_embedding`` says the model takes it; ~0.3 s on a full event).
    Shipped as TorchScript (model_files kind ``"torchscript"``).
    """

    def __init__(self, embedding: nn.Module, gnn: InteractionGNN) -> None:
        super().__init__()
        self.embedding = embedding
        self.gnn = gnn
        self.uses_edge_scores = bool(gnn.uses_edge_scores)
        self.uses_triplet_inputs = bool(gnn.uses_triplet_inputs)
        self.reads_embedding = True

    def forward(
        self,
        features: torch.Tensor,
        edges: torch.Tensor,
        edge_scores: torch.Tensor | None = None,
        embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        embedded = self.embedding(features).detach() if embedding is None else embedding
        return self.gnn(torch.cat([features, embedded], dim=1), edges, edge_scores)


def rebuild_embedded_gnn(model: nn.Module, embedding_kwargs: dict[str, Any]) -> EmbeddedGNN:
    """A Python :class:`EmbeddedGNN` with the weights of ``model`` (an EmbeddedGNN, typically its
    TorchScript as shipped), built from this code's classes: re-scripting it gives a model file
    that runs this code's inference (e.g. :class:`trackflow.pipeline.mlp.Tanh`) with the same
    weights. ``embedding_kwargs``: the manifest's EmbeddingNet arguments."""
    from trackflow.pipeline.embedding import EmbeddingNet

    gnn = inner_gnn(model)
    shape = gnn_architecture(model)
    rebuilt = EmbeddedGNN(
        EmbeddingNet(**embedding_kwargs),
        InteractionGNN(
            in_features=int(gnn.in_features),
            n_iterations=int(gnn.n_iterations),
            r_scale=float(gnn.r_scale),
            z_scale=float(gnn.z_scale),
            **shape,
        ),
    )
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt.eval()


def rescript_gnn(models_dir: Path) -> None:
    """Re-script ``models_dir``'s EmbeddedGNN with this code's classes, same weights, and update
    its manifest entry (file hash): a model directory trained before an inference change of
    :class:`InteractionGNN` / :mod:`trackflow.pipeline.mlp` then runs it. Logits are unchanged up
    to float32 rounding (checked by ``tests/test_stages.py``)."""
    from trackflow.pipeline import model_files

    manifest = model_files.read_manifest(models_dir)
    entry = manifest.stages["gnn"]
    embedding = manifest.stages["embedding"].model
    if entry.kind != "torchscript" or embedding is None:
        raise ConfigError(
            f"{models_dir}: rescript_gnn needs a TorchScript EmbeddedGNN and a state-dict embedding"
        )
    rebuilt = rebuild_embedded_gnn(model_files.load_model(manifest, "gnn"), dict(embedding["kwargs"]))
    manifest.stages["gnn"] = model_files.save_model(
        rebuilt, models_dir, "gnn", kind="torchscript", config=entry.config
    )
    model_files.write_manifest(
        models_dir,
        manifest.stages,
        features=manifest.features,
        training=manifest.training,
        metrics=manifest.metrics,
    )
