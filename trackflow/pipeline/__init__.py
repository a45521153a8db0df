"""The five-stage GNN tracking pipeline (embedding, graph building, filter, GNN, labelling).

Pure computation on one event or a batch; never imports dask.
"""

from __future__ import annotations

from trackflow.pipeline.embedding import EmbeddingNet
from trackflow.pipeline.features import FeatureConfig, hit_features
from trackflow.pipeline.filter import FilterNet
from trackflow.pipeline.gnn import InteractionGNN
from trackflow.pipeline.graph import STAGE_NAMES, EventTracks, HitGraph

__all__ = [
    "STAGE_NAMES",
    "EmbeddingNet",
    "EventTracks",
    "FeatureConfig",
    "FilterNet",
    "HitGraph",
    "InteractionGNN",
    "hit_features",
]
