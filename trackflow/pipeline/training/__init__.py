"""Training of the pipeline's models on simulated events with truth: ``train(TrainingConfig)``.

Stages are trained in turn, each on the output of the ones before, exactly as the pipeline will
run them:

1. embedding (metric learning, :mod:`.embedding`);
2. graph-building radius chosen on validation events so the graph keeps >= 98 % of the truth
   edges (consecutive hits) of particles with pT > 1 GeV, with ``max_neighbours`` capping the
   edges per hit;
3. filter (:mod:`.filter`) trained on those graphs; cut chosen to keep >= 97 % of the truth edges
   the graph found;
4. GNN (:mod:`.gnn`) on the filtered edges; cut chosen for edge purity >= 95 % and the best track
   efficiency with connected-components labelling.

The result is a model directory in the format of :mod:`trackflow.pipeline.model_files`
(``manifest.json`` + ``embedding.pt``, ``filter.pt``, ``gnn.pt`` state dicts loadable with
``torch.load(weights_only=True)``), whose manifest also records the training data (directory,
event ids, seed), every hyper-parameter and the validation metrics.
"""

from __future__ import annotations

from trackflow.pipeline.training.run import TrainingConfig, train

__all__ = ["TrainingConfig", "train"]
