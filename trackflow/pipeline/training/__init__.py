"""Training of the pipeline's models on simulated events with truth: ``train(TrainingConfig)``.

Stages are trained in turn, each on the output of the ones before, exactly as the pipeline will
run them:

1. embedding (metric learning, :mod:`.embedding`);
2. graph-building radius chosen on validation events so the graph keeps >= 98 % of the truth
   edges (consecutive hits) of particles with pT > 1 GeV, with ``max_neighbours`` capping the
   edges per hit;
3. filter (:mod:`.filter`) trained on those graphs; cut chosen to keep >= 97 % of the truth edges
   the graph found;
4. GNN (:mod:`.gnn`) on the filtered edges; cut chosen for edge purity >= 95 %, then the
   labelling (connected components or walkthrough, and its cut) with the best track efficiency
   on the validation events within fake rate <= 5 % and duplicate rate <= 2 %.

Data recipe of the shipped models (``make data``; real kinematics, real noise level, files held
out)::

    real=$PWD/../shared/data/trackml/kaggle_train_1
    mkdir -p data/particles_train data/particles_holdout
    for e in 1001 1003 1005 1009 1010 1012 1013; do
        ln -s $real/event00000$e-particles.csv.gz data/particles_train/; done
    for e in 1018 1020; do ln -s $real/event00000$e-particles.csv.gz data/particles_holdout/; done
    trackflow simulate --out data/train --events 14 --seed 1 --particles-from data/particles_train
    trackflow simulate --out data/val --events 2 --seed 2 --particles-from data/particles_holdout
    trackflow simulate --out data/test --events 4 --seed 3 --particles-from data/particles_holdout
    trackflow simulate --out data/gun_train --events 6 --seed 21 --pileup 100
    # data/train_mix: data/train plus data/gun_train as events 100-105 (symlinks)

and the training runs (embedding and filter first, then the GNN on the filtered graphs of
real-kinematics and gun events, so it also holds with the gun's 55 mm vertex spread; TrackML's
beam spot is ~5 mm; then the same GNN fine-tuned with 8 message-passing iterations: its weights
are shared across iterations, so it starts from what 4 iterations learned; then a filter that
also reads each hit pair's physics, and the GNN fine-tuned again on that filter's graphs)::

    trackflow train --data data/train --val data/val --out models-1 --seed 0
    trackflow train --data data/train_mix --val data/val --out models-2 \
        --filter-from models-1 --edge-events 12 --seed 0
    trackflow train --data data/train_mix --val data/val --out models-3 \
        --gnn-from models-2 --gnn-iterations 8 --gnn-learning-rate 2e-3 --epochs-gnn 10 \
        --edge-events 12 --seed 1
    trackflow train --data data/train_mix --val data/val --out models-4 \
        --embedding-from models-3 --filter-pair-features --epochs-filter 15 --epochs-gnn 0 \
        --edge-events 12 --seed 1
    trackflow train --data data/train_mix --val data/val --out models-5 \
        --gnn-from models-3 --filter-from models-4 --epochs-gnn 6 --gnn-learning-rate 2e-3 \
        --edge-events 12 --seed 1
    trackflow train --data data/train_mix --val data/val --out trackflow/pipeline/models \
        --gnn-from models-5 --epochs-gnn 8 --gnn-learning-rate 1.5e-3 --edge-events 12 --seed 2

(models-3's last step ran in parts: the fine-tuning; then, once the ``cc_extend`` labelling
existed, ``--gnn-from <that directory> --epochs-gnn 0`` to re-choose the GNN cut and labelling on
``data/val`` with it; then the same again after each speed-up of the GNN's code, to re-save its
TorchScript: same weights, same validation metrics and choice. The pair-feature filter keeps
3.5 instead of 7.0 edges per hit at the same 97.5 % efficiency, so the GNN, the largest stage,
scores half as many edges.)

Training never sees the two held-out particle files; validation (cuts) and test (the figures of
``benchmarks/model_quality.py``) use them with other seeds (other rotations in phi, other
material interactions and noise).

The result is a model directory in the format of :mod:`trackflow.pipeline.model_files`
(``manifest.json`` + ``embedding.pt``, ``filter.pt``, ``gnn.pt`` state dicts loadable with
``torch.load(weights_only=True)``), whose manifest also records the training data (directory,
event ids, seed), every hyper-parameter and the validation metrics.
"""

from __future__ import annotations

from trackflow.pipeline.training.run import TrainingConfig, train

__all__ = ["TrainingConfig", "train"]
