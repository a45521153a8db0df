"""The state handed from stage to stage (``HitGraph``) and one event's result (``EventTracks``).

Both are plain dataclasses of numpy arrays and torch tensors, so they pickle (Dask moves a
``HitGraph`` between workers in staged mode) and carry their own timings (s) and counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd
import torch

from trackflow.events.submission import tracks_frame

STAGE_NAMES: tuple[str, ...] = ("embedding", "graph_building", "filter", "gnn", "labelling")
COUNT_NAMES: tuple[str, ...] = ("hits", "edges_graph", "edges_filter", "edges_gnn", "tracks")


@dataclass
class HitGraph:
    """One event on its way through the pipeline.

    ``hit_ids`` int64 [N] (numpy, stays on the host); ``features`` float32 [N, F];
    ``embedding`` float32 [N, D]; ``edges`` int64 [2, E] as (source, target) rows into the hits;
    ``edge_scores`` float32 [E] in [0, 1] (sigmoid of the last model's logits, one per edge);
    ``track_labels`` int64 [N] (numpy). ``timings`` (s) and ``counts`` fill as stages run.
    ``segments`` int64 [N] (optional): for several events fused into one graph, the event of
    each hit (0, 1, ...); graph building never joins hits of different segments.
    ``layers`` int64 [N] and ``cylindrical`` float64 [N, 3] (r mm, phi rad, z mm), numpy, on
    the host (optional): the hits' detector layers and positions, which the layer map's graph
    building reads (:mod:`trackflow.pipeline.layer_map`).
    """

    event_id: int
    hit_ids: np.ndarray
    features: torch.Tensor
    embedding: torch.Tensor | None = None
    edges: torch.Tensor | None = None
    edge_scores: torch.Tensor | None = None
    track_labels: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    segments: torch.Tensor | None = None
    layers: np.ndarray | None = None
    cylindrical: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.counts.setdefault("hits", len(self.hit_ids))

    @property
    def n_hits(self) -> int:
        return len(self.hit_ids)

    @property
    def n_edges(self) -> int:
        return 0 if self.edges is None else int(self.edges.shape[1])

    @property
    def device(self) -> torch.device:
        return self.features.device

    def to(self, device: str | torch.device) -> HitGraph:
        """A copy with every tensor on ``device`` (numpy arrays stay on the host)."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved, timings=dict(self.timings), counts=dict(self.counts))

    @classmethod
    def from_features(
        cls,
        features: torch.Tensor | np.ndarray,
        event_id: int = 0,
        hit_ids: np.ndarray | None = None,
    ) -> HitGraph:
        """A graph from ready-made features (e.g. Exa.TrkX service inputs: r/3000, phi/pi, z/400)."""
        feats = torch.as_tensor(features).to(torch.float32).contiguous()
        ids = np.arange(len(feats)) if hit_ids is None else hit_ids
        return cls(event_id=int(event_id), hit_ids=np.asarray(ids, np.int64), features=feats)


@dataclass
class EventTracks:
    """The reconstructed tracks of one event.

    ``track_labels`` int64 [N]: one label per hit, hits sharing a label form a track; a hit on no
    edge is a track of its own. ``timings``: s per stage name; ``counts``: hits, edges_graph,
    edges_filter, edges_gnn, tracks.
    """

    event_id: int
    hit_ids: np.ndarray
    track_labels: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_tracks(self) -> int:
        return len(np.unique(self.track_labels))

    def to_frame(self) -> pd.DataFrame:
        """Submission frame: event_id, hit_id, track_id (int64), one row per hit."""
        return tracks_frame(self.event_id, self.hit_ids, self.track_labels)
