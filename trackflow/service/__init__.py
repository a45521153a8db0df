"""Tracking as a service on Dask (issue 21): :class:`Service` (models warm on every worker,
``submit`` / ``map``, dynamic batching, a bounded queue with a stated policy when it is full)
and ``trackflow stream`` (:mod:`trackflow.service.stream`: open-loop Poisson arrivals at given
rates, latency split into queueing, transfer and service, against the estimate's prediction).
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
