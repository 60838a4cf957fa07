"""Metrics: Prometheus counters and gauges, one registry per app."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .._results import Outcome

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they only add noise to scrapes

BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """``execr_runs_total{outcome}``, ``execr_run_duration_seconds``, ``execr_queue_depth``,
    ``execr_in_flight``, ``execr_rejected_total{reason}``."""

    def __init__(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter("execr_runs_total", "Runs finished, by outcome", ["outcome"], registry=self.registry)
        self.duration = Histogram(
            "execr_run_duration_seconds", "Run duration in the worker", buckets=BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("execr_queue_depth", "Runs waiting for a worker", registry=self.registry)
        self.queue_depth.set_function(queue_depth)
        self.in_flight = Gauge("execr_in_flight", "Runs executing in a worker", registry=self.registry)
        self.in_flight.set_function(in_flight)
        self.rejected = Counter(
            "execr_rejected_total", "Requests refused before running, by reason", ["reason"], registry=self.registry
        )
        for outcome in Outcome:
            self.runs.labels(outcome.value)
        for reason in ("unauthorized", "invalid", "limit_exceeded", "too_large", "queue_full", "unavailable"):
            self.rejected.labels(reason)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
