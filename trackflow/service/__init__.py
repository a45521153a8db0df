"""Tracking as a service on Dask (issue 21): :class:`Service` (models warm on every worker,
``submit`` / ``map``, dynamic batching, a bounded queue with a stated policy when it is full)
and ``trackflow stream`` (:mod:`trackflow.service.stream`: open-loop Poisson arrivals at given
rates, latency split into queueing, transfer and service, against the estimate's prediction);
``trackflow serve`` (:mod:`trackflow.service.kserve`: the service behind the Triton / KServe v2
inference protocol, :mod:`trackflow.service.protocol`) and ``trackflow export triton``
(:mod:`trackflow.service.triton`: the pipeline as a Triton model repository, run by the real
bundled tritonserver).
"""

from __future__ import annotations

from trackflow.service.batcher import POLICIES, ServiceClosed, ServiceOverloaded
from trackflow.service.service import EventFailed, EventTiming, Service, ServiceConfig, ServiceCounts

__all__ = [
    "POLICIES",
    "EventFailed",
    "EventTiming",
    "Service",
    "ServiceClosed",
    "ServiceConfig",
    "ServiceCounts",
    "ServiceOverloaded",
]
