"""Prometheus metrics of one service instance, in its own registry (several apps can coexist).

    wsdeploy_requests_total{endpoint, status}       counter
    wsdeploy_request_seconds{endpoint}              histogram, whole request incl. body upload
    wsdeploy_batch_size                             histogram, images per model call
    wsdeploy_batch_seconds                          histogram, one model call
    wsdeploy_queue_depth                            gauge, requests waiting for a batch
    wsdeploy_requests_in_flight                     gauge, admitted requests (waiting or running)

With `--workers N` every worker process has its own registry: a scrape sees the worker that
answered it.
"""
from __future__ import annotations

from collections.abc import Callable

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    """Counters and histograms; `render()` gives the text exposition format.

    Args:
        queue_depth: callable returning the number of requests waiting for a batch.
        in_flight: callable returning the number of admitted requests.
    """

    def __init__(self, *, queue_depth: Callable[[], int], in_flight: Callable[[], int]) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:  # pragma: no cover - the serve extra brings it
            raise ImportError('wsdeploy serve needs prometheus-client: pip install "wsdeploy[serve]"') from exc
        self._prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self.requests = prom.Counter(
            "wsdeploy_requests", "HTTP requests by endpoint and status code",
            ["endpoint", "status"], registry=self.registry,
        )
        self.latency = prom.Histogram(
            "wsdeploy_request_seconds", "Request latency in seconds", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = prom.Histogram(
            "wsdeploy_batch_size", "Images per model call", buckets=_BATCH_BUCKETS, registry=self.registry,
        )
        self.batch_seconds = prom.Histogram(
            "wsdeploy_batch_seconds", "Seconds per model call", buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        depth = prom.Gauge("wsdeploy_queue_depth", "Requests waiting for a batch", registry=self.registry)
        depth.set_function(lambda: float(queue_depth()))
        flight = prom.Gauge(
            "wsdeploy_requests_in_flight", "Admitted requests, waiting or running", registry=self.registry,
        )
        flight.set_function(lambda: float(in_flight()))

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) for `GET /metrics`."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
