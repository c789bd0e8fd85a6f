"""Prometheus metrics of one server instance, on its own registry.

A registry per app (not the global one) so tests and embedders can build
several apps in one process without duplicate-metric errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
AUDIO_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


@dataclass
class Metrics:
    """The instruments the routes and the batcher update."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    audio_seconds: Histogram
    queue_depth: Gauge
    batch_size: Histogram
    real_time_factor: Histogram
    model_loaded: Gauge
    dropped_pieces: Counter
    admitted_audio_seconds: Gauge
    refused: Counter
    decodes_in_flight: Gauge

    @classmethod
    def create(cls) -> Metrics:
        """Fresh instruments on a fresh registry."""
        r = CollectorRegistry()
        return cls(
            registry=r,
            requests=Counter(
                "twi_asr_requests", "HTTP requests by route and status", ["route", "status"], registry=r
            ),
            latency=Histogram(
                "twi_asr_request_latency_seconds",
                "Request latency by route",
                ["route"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            audio_seconds=Histogram(
                "twi_asr_audio_duration_seconds",
                "Duration of transcribed audio",
                buckets=AUDIO_BUCKETS,
                registry=r,
            ),
            queue_depth=Gauge("twi_asr_queue_depth", "Requests waiting for the engine", registry=r),
            batch_size=Histogram(
                "twi_asr_batch_size", "Clips per engine batch", buckets=BATCH_BUCKETS, registry=r
            ),
            real_time_factor=Histogram(
                "twi_asr_real_time_factor", "Engine seconds per audio second", buckets=RTF_BUCKETS, registry=r
            ),
            model_loaded=Gauge("twi_asr_model_loaded", "1 when the model is loaded and serving", registry=r),
            dropped_pieces=Counter(
                "twi_asr_dropped_pieces",
                "Queued pieces of audio dropped because their client went away",
                registry=r,
            ),
            admitted_audio_seconds=Gauge(
                "twi_asr_admitted_audio_seconds",
                "Audio seconds the server holds: decoding, queued and running",
                registry=r,
            ),
            refused=Counter(
                "twi_asr_refused", "Requests refused with 503 by admission control", ["reason"], registry=r
            ),
            decodes_in_flight=Gauge("twi_asr_decodes_in_flight", "Uploads being decoded", registry=r),
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
