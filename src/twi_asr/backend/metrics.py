"""Prometheus metrics of the backend: jobs by state, queue age, job latency, requests.

Jobs by state and the queue's age are read from the database at scrape time
(a custom collector), so every replica reports the same truth about the
shared queue; latency and request counts are this process's own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BackendMetrics"]

LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class BackendMetrics:
    """A private registry with the backend's metrics (several apps in one process do not clash)."""

    def __init__(self, db: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.db = db
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "twi_asr_backend_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "twi_asr_backend_job_latency_seconds",
            "Jobs from submit to done",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.finished = Counter(
            "twi_asr_backend_jobs_finished_total",
            "Jobs this process finished, by status",
            ["status"],
            registry=self.registry,
        )
        self.registry.register(_QueueCollector(db))

    def observe_job(self, job: Any) -> None:
        """Count a finished job and, when done, its latency from submit to done."""
        self.finished.labels(status=job.status).inc()
        if job.status == "done" and job.finished_at is not None:
            self.latency.observe(max(0.0, (job.finished_at - job.created_at).total_seconds()))

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _QueueCollector:
    """Jobs by state and the age of the oldest due job, from the database at scrape time."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily
        from sqlalchemy import func, select

        from .db.models import JOB_STATES, Job, utcnow

        states = GaugeMetricFamily("twi_asr_backend_jobs", "Jobs by status (all replicas)", labels=["status"])
        age = GaugeMetricFamily("twi_asr_backend_queue_age_seconds", "Age of the oldest queued job (0: none)")
        up = GaugeMetricFamily("twi_asr_backend_database_up", "1 when the database answered this scrape")
        try:
            with self.db.session() as s:
                counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
                oldest = s.scalar(select(func.min(Job.created_at)).where(Job.status == "queued"))
        except Exception:
            up.add_metric([], 0.0)
            yield up
            return
        for state in JOB_STATES:
            states.add_metric([state], float(counts.get(state, 0)))
        if oldest is not None and oldest.tzinfo is None:
            from datetime import timezone

            oldest = oldest.replace(tzinfo=timezone.utc)
        age.add_metric([], max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)
        up.add_metric([], 1.0)
        yield states
        yield age
        yield up
