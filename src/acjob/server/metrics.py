"""Prometheus metrics at ``/metrics``: job counts, transitions, requests, spool space.

Values are read when scraped (from the store and the file system) or counted in
memory since the daemon started; nothing here is needed for correctness.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ..model import State
from .services import Services

router = APIRouter()


class DaemonCollector(Collector):
    """Reads the daemon's figures at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.transitions: dict[str, int] = {}

    def count_transition(self, job_id: str, seq: int, state: State) -> None:
        """A store listener: count every committed event by state."""
        self.transitions[state.value] = self.transitions.get(state.value, 0) + 1

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Yield the metric families."""
        svc = self.services
        jobs = GaugeMetricFamily("acjob_jobs", "Jobs in the store by state.", labels=["state"])
        counts = svc.store.count_by_state()
        for state in State:
            jobs.add_metric([state.value], counts.get(state.value, 0))
        yield jobs
        events = CounterMetricFamily("acjob_job_events", "Job state changes since start.",
                                     labels=["state"])
        for name, n in sorted(self.transitions.items()):
            events.add_metric([name], n)
        yield events
        yield GaugeMetricFamily("acjob_http_requests_in_flight", "Requests being served.",
                                value=svc.activity.in_flight)
        handoffs = CounterMetricFamily(
            "acjob_handoffs", "Job files handed to clients on this machine, by kind.",
            labels=["kind"])
        for kind, n in sorted(svc.activity.handoffs.items()):
            handoffs.add_metric([kind], n)
        yield handoffs
        if svc.commits is not None:
            database = svc.store.database
            yield CounterMetricFamily(
                "acjob_grouped_commits", "Acknowledged commits flushed in groups.",
                value=database.committed)
            yield CounterMetricFamily(
                "acjob_group_flushes", "Flushes of grouped commits (each covers many).",
                value=svc.commits.flushes)
        yield GaugeMetricFamily("acjob_waiters", "Long-polls and streams waiting for events.",
                                value=svc.hub.waiting)
        try:
            fs = os.statvfs(svc.spool.root)
            yield GaugeMetricFamily("acjob_spool_free_bytes",
                                    "Free bytes on the spool's file system.",
                                    value=fs.f_bavail * fs.f_frsize)
        except OSError:
            pass


def install_metrics(services: Services) -> CollectorRegistry:
    """Create the registry of this daemon (one per app, never the global one)."""
    registry = CollectorRegistry(auto_describe=True)
    collector = DaemonCollector(services)
    services.store.subscribe(collector.count_transition)
    registry.register(collector)
    return registry


@router.get("/metrics", tags=["service"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of the daemon's metrics."""
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
