"""What the exported repository's Python models run inside Triton's Python backend.

Each ``model.py`` of the repository is three lines that hand Triton's ``args`` and its
``triton_python_backend_utils`` module (``pb_utils``, which exists only inside Triton) to a class
here. Keeping the code here, not in the repository, means a repository runs the trackflow
installed beside Triton, the same code as ``trackflow reconstruct``.

* :class:`WholePipeline` (``custom``): one request = one event's hits -> ``track_id``.
* :class:`Stage` (``ensemble``): one pipeline stage; the first takes the hits, the last gives
  ``track_id``, and between them the event's state (:data:`STATE`, the fields of
  :class:`~trackflow.pipeline.graph.HitGraph` the stages read and write) travels as tensors
  through Triton's ensemble scheduler, a copy per hop, as in the study.

Model parameters (``config.pbtxt``): ``models_dir`` (relative to the repository), ``threads``
(torch / FAISS threads of each instance). Settings resolve as everywhere in trackflow: the
environment's dask config over the manifest.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trackflow.service.protocol import COLUMN_DTYPES, INPUTS, OUTPUT

logger = logging.getLogger(__name__)

#: state tensor -> (Triton datatype, numpy dtype, dims): what one stage hands the next
STATE: dict[str, tuple[str, str, list[int]]] = {
    "HIT_ID": ("TYPE_INT64", "int64", [-1]),
    "FEATURES": ("TYPE_FP32", "float32", [-1, -1]),
    "LAYERS": ("TYPE_INT64", "int64", [-1]),
    "CYLINDRICAL": ("TYPE_FP64", "float64", [-1, -1]),
    "EMBEDDING": ("TYPE_FP32", "float32", [-1, -1]),
    "EDGES": ("TYPE_INT64", "int64", [-1, -1]),
    "EDGE_SCORES": ("TYPE_FP32", "float32", [-1]),
    # which of the optional fields are set: embedding, edges, edge_scores (1 = set)
    "PRESENT": ("TYPE_INT64", "int64", [-1]),
}
OPTIONAL = ("embedding", "edges", "edge_scores")


def _parameters(args: dict[str, Any]) -> tuple[Path, int]:
    """(models directory, threads) of a model from its config.pbtxt's parameters."""
    config = json.loads(args["model_config"])
    parameters = {k: v["string_value"] for k, v in (config.get("parameters") or {}).items()}
    repository = Path(args["model_repository"]).parent
    return repository / parameters["models_dir"], int(parameters["threads"])


def instance_device(args: dict[str, Any]) -> str:
    """The torch device of a model instance: ``cuda:N`` for a ``KIND_GPU`` instance (Triton
    says which GPU, ``model_instance_device_id``), else ``cpu``."""
    if args.get("model_instance_kind") == "GPU":
        return f"cuda:{int(args.get('model_instance_device_id', 0))}"
    return "cpu"


def _load(args: dict[str, Any]) -> Any:
    from trackflow.pipeline import Pipeline

    models_dir, threads = _parameters(args)
    # Pipeline.load checks every weight file's sha256 against the manifest before loading it
    return Pipeline.load(models_dir, device=instance_device(args), threads=threads)


def _hits(request: Any, pb_utils: Any) -> pd.DataFrame:
    columns = {}
    for name, dtype in COLUMN_DTYPES.items():
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        columns[name] = tensor.as_numpy().reshape(-1).astype(dtype, copy=False)
    return pd.DataFrame(columns)


def _event(hits: pd.DataFrame) -> Any:
    from trackflow.events import Event
    from trackflow.events.event import with_derived

    return Event(0, with_derived(hits))


def _check(hits: pd.DataFrame) -> None:
    """What Triton does not check itself (it checks datatypes and ranks)."""
    if len(hits) == 0:
        raise ValueError("the event has no hits (shape [0])")
    for name in ("x", "y", "z"):
        bad = int(np.count_nonzero(~np.isfinite(hits[name].to_numpy())))
        if bad:
            raise ValueError(f"input {name!r}: {bad} value(s) are not finite")
    if hits["hit_id"].duplicated().any():
        raise ValueError("input 'hit_id': values repeat; each hit needs its own id")


def _answer(pb_utils: Any, work: Any, request: Any) -> Any:
    """One request's response: ``work(request)`` gives its output tensors; any error becomes
    the response's error (one line), and the model goes on with the next request."""
    try:
        return pb_utils.InferenceResponse(output_tensors=work(request))
    except Exception as error:  # bad hits, or a stage failing on them: this request only
        logger.warning("trackflow model: %s", error, exc_info=True)
        message = " ".join(f"{type(error).__name__}: {error}".split())
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


class WholePipeline:
    """The ``custom`` repository's model: the whole pipeline on one event per request."""

    def __init__(self, args: dict[str, Any], pb_utils: Any) -> None:
        self.pb_utils = pb_utils
        self.pipeline = _load(args)

    def _run(self, request: Any) -> list[Any]:
        hits = _hits(request, self.pb_utils)
        _check(hits)
        tracks = self.pipeline(_event(hits))
        labels = np.asarray(tracks.track_labels, dtype=np.int64)
        return [self.pb_utils.Tensor(OUTPUT, labels)]

    def execute(self, requests: list[Any]) -> list[Any]:
        return [_answer(self.pb_utils, self._run, request) for request in requests]


class Stage:
    """One stage of the ``ensemble`` repository (``stage``: a name of ``Pipeline.stage_names``)."""

    def __init__(self, args: dict[str, Any], pb_utils: Any, stage: str) -> None:
        self.pb_utils = pb_utils
        self.stage = stage
        self.pipeline = _load(args)
        self.first = stage == self.pipeline.stage_names[0]
        self.last = stage == self.pipeline.stage_names[-1]

    def _graph_in(self, request: Any) -> Any:
        from trackflow.pipeline.graph import HitGraph

        if self.first:
            hits = _hits(request, self.pb_utils)
            _check(hits)
            return self.pipeline.prepare(_event(hits))
        state = {name: self.pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in STATE}
        present = dict(zip(OPTIONAL, state["PRESENT"].astype(bool).tolist(), strict=True))
        return HitGraph(
            event_id=0,
            hit_ids=state["HIT_ID"],
            features=torch.from_numpy(np.ascontiguousarray(state["FEATURES"])),
            embedding=torch.from_numpy(np.ascontiguousarray(state["EMBEDDING"]))
            if present["embedding"]
            else None,
            edges=torch.from_numpy(np.ascontiguousarray(state["EDGES"])) if present["edges"] else None,
            edge_scores=(
                torch.from_numpy(np.ascontiguousarray(state["EDGE_SCORES"]))
                if present["edge_scores"]
                else None
            ),
            layers=state["LAYERS"],
            cylindrical=state["CYLINDRICAL"],
        )

    def _state_out(self, graph: Any) -> list[Any]:
        n = graph.n_hits
        # an unset field travels as a placeholder of its rank, flagged absent in PRESENT
        blank = {
            "EMBEDDING": np.zeros((n, 1), np.float32),
            "EDGES": np.zeros((2, 1), np.int64),
            "EDGE_SCORES": np.zeros(1, np.float32),
        }
        values = {
            "HIT_ID": np.asarray(graph.hit_ids),
            "FEATURES": graph.features,
            "LAYERS": graph.layers,
            "CYLINDRICAL": graph.cylindrical,
            "EMBEDDING": graph.embedding,
            "EDGES": graph.edges,
            "EDGE_SCORES": graph.edge_scores,
        }
        tensors = []
        for name, value in values.items():
            if value is None:
                value = blank[name]
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            tensors.append(self.pb_utils.Tensor(name, np.ascontiguousarray(array.astype(STATE[name][1]))))
        present = np.array([getattr(graph, field) is not None for field in OPTIONAL], np.int64)
        tensors.append(self.pb_utils.Tensor("PRESENT", present))
        return tensors

    def _run(self, request: Any) -> list[Any]:
        graph = self.pipeline.run_stage(self.stage, self._graph_in(request))
        if self.last:
            labels = np.asarray(graph.track_labels, dtype=np.int64)
            return [self.pb_utils.Tensor(OUTPUT, labels)]
        return self._state_out(graph)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [_answer(self.pb_utils, self._run, request) for request in requests]


__all__ = ["INPUTS", "OPTIONAL", "STATE", "Stage", "WholePipeline"]
