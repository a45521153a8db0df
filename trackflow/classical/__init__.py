"""Classical tracking: the ACTS baseline (triplet seeding, CKF, greedy ambiguity resolution) that
the GNN pipeline is compared with. Reconstruction of one event, like :mod:`trackflow.pipeline`,
but with no model; it reads events and never imports Dask. Start with :func:`reconstruct_event`.

Needs pyacts (``pip install 'trackflow[sim]'``) to run; importing this package does not import it.
"""

from __future__ import annotations

from trackflow.classical.ckf import ClassicalTrackingConfig, ClassicalTracks, prepare, reconstruct_event
from trackflow.classical.measurements import Measurements, assign_hits, hit_measurements

__all__ = [
    "ClassicalTrackingConfig",
    "ClassicalTracks",
    "Measurements",
    "assign_hits",
    "hit_measurements",
    "prepare",
    "reconstruct_event",
]
