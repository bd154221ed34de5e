"""``/metrics`` in the Prometheus text format (OpenMetrics when the scraper asks for it).

Every scrape reads the database through a custom collector registered in a registry of
this app (never the process-wide default). The figures cover all tenants and are the
same on every replica: scrape one replica, or aggregate with ``max``, never ``sum``.
Durations are *gauge histograms* of a sliding window (jobs that ended / started in the
last hour): use ``histogram_quantile`` on the buckets directly, not on ``rate()``.

Public by default, like most exporters on a private network; with ``public=False`` a
scrape needs ``Authorization: Bearer <key>`` of an admin key of the default tenant
(the operators' tenant), since the figures span every tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from jobyard import errors
from jobyard.api.schemas.base import ErrorOut
from jobyard.domain.auth import Role
from jobyard.domain.jobs import DEFAULT_TENANT_ID
from jobyard.service.status import (
    DURATION_BOUNDS_S,
    LATENCY_BOUNDS_S,
    Distribution,
    SystemStatusService,
)
from jobyard.wiring import Services


def _buckets(bounds: Sequence[float], d: Distribution) -> list[tuple[str, float]]:
    les = [*(str(float(b)) for b in bounds), "+Inf"]
    return [(le, float(n)) for le, n in zip(les, d.buckets, strict=True)]


class JobyardCollector:
    """Reads :meth:`SystemStatusService.metrics` on each scrape."""

    def __init__(self, service: SystemStatusService) -> None:
        self.service = service

    def collect(self) -> Iterable[Metric]:
        m = self.service.metrics()
        jobs = GaugeMetricFamily("jobyard_jobs", "Jobs by status (all tenants)", labels=["status"])
        for state, n in sorted(m.jobs_by_state.items()):
            jobs.add_metric([state], n)
        queue = GaugeMetricFamily(
            "jobyard_queue_depth", "Queued jobs by priority (all tenants)", labels=["priority"]
        )
        for priority, n in m.queued_by_priority.items():
            queue.add_metric([priority], n)
        durations = GaugeHistogramMetricFamily(
            "jobyard_job_duration_seconds",
            "Running time of the jobs that ended in the last hour, by final status",
            labels=["status"],
        )
        for state, d in sorted(m.durations.items()):
            durations.add_metric([state], _buckets(DURATION_BOUNDS_S, d), d.total)
        latency = GaugeHistogramMetricFamily(
            "jobyard_dispatch_latency_seconds",
            "Queued → process started, of the jobs started in the last hour",
            buckets=_buckets(LATENCY_BOUNDS_S, m.dispatch_latency),
            gsum_value=m.dispatch_latency.total,
        )
        nodes = GaugeMetricFamily("jobyard_nodes", "Nodes by status", labels=["status"])
        for status, n in m.nodes_by_status.items():
            nodes.add_metric([status], n)
        total = GaugeMetricFamily("jobyard_slots_total", "Slots of active nodes", m.slots_total)
        used = GaugeMetricFamily("jobyard_slots_used", "Slots taken by jobs", m.slots_used)
        return [jobs, queue, durations, latency, nodes, total, used]


def metrics_route(app: FastAPI, services: Services, *, public: bool = True) -> CollectorRegistry:
    """Add ``GET /metrics`` to ``app``; returns the app's registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobyardCollector(services.status))

    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}},
        503: {"model": ErrorOut},
    }
    if not public:
        responses |= {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (all tenants)",
        response_class=Response,
        responses=responses,
    )
    def metrics(
        request: Request,
        authorization: Annotated[str | None, Header(description="Bearer <api key>")] = None,
    ) -> Response:
        if not public:
            principal = services.auth.authenticate(authorization)
            if (
                principal.role not in (Role.ADMIN, Role.SUPERUSER)
                or principal.tenant_id != DEFAULT_TENANT_ID
            ):
                raise errors.Forbidden("/metrics needs an admin key of the default tenant")
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), media_type=content_type)

    return registry
