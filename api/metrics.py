"""Prometheus metrics in a registry of the app's own (tests can build many apps)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Request counts and latencies, gallery size, model id, queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gunmatch_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gunmatch_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.gallery_items = Gauge(
            "gunmatch_gallery_items", "items in the gallery", registry=self.registry
        )
        self.model = Gauge(
            "gunmatch_model_info", "model in use (value 1)", ["model_id"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "gunmatch_embedding_queue_depth", "embedding jobs admitted", registry=self.registry
        )
        self.rejected = Counter(
            "gunmatch_queue_rejections_total", "requests refused with 503", registry=self.registry
        )

    def set_model(self, model_id: str) -> None:
        """Record the model in use (only one label set is kept)."""
        self.model.clear()
        self.model.labels(model_id=model_id).set(1)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or _bucket(scope.get("path", ""))
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, path, str(status["code"])).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)


def _bucket(path: str) -> str:
    """Unmatched paths share one label so scanners cannot blow up the label space."""
    return "/static" if path.startswith("/static/") else "<unmatched>"
