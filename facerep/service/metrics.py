"""Prometheus metrics in the text exposition format (0.0.4), without a client library.

- `facerep_http_requests_total{method, route, status}`: counter of answered requests. `route` is
  the route template (`/v1/galleries/{name}/search`), or `unmatched`, so that clients cannot
  grow the label set with made-up paths.
- `facerep_http_request_duration_seconds{method, route}`: histogram of request latency.
- `facerep_embed_batches_total`, `facerep_embed_crops_total`: encoder calls and the crops they
  embedded (their ratio is the mean batch size).
- `facerep_gallery_faces{gallery}`: gauge of faces in each gallery this server has opened,
  counted when it opened and kept up to date with this server's adds and removals; faces that
  other processes add or remove show once the server reopens the gallery (a restart).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds: a face request costs ~0.1 s of CPU; queues under load stretch that to seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Any other method is counted as "other": clients must not be able to mint label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Request counts and latencies, safe to update from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = defaultdict(int)
        # (method, route) -> per-bucket counts (the last is +Inf), sum of seconds
        self._latency: dict[tuple[str, str], list] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        slot = bisect.bisect_left(BUCKETS, seconds)  # the first `le` >= seconds, else +Inf
        with self._lock:
            self._counts[(method, route, str(status))] += 1
            latency = self._latency.setdefault((method, route), [[0] * (len(BUCKETS) + 1), 0.0])
            latency[0][slot] += 1
            latency[1] += seconds

    def render(self, batches: int, crops: int, gallery_faces: dict[str, int]) -> str:
        """Everything, as Prometheus text."""
        with self._lock:
            counts = dict(self._counts)
            latency = {key: (list(b), s) for key, (b, s) in self._latency.items()}
        lines = _counter_lines(counts) + _histogram_lines(latency)
        lines += [
            "# HELP facerep_embed_batches_total Encoder forward passes.",
            "# TYPE facerep_embed_batches_total counter",
            f"facerep_embed_batches_total {batches}",
            "# HELP facerep_embed_crops_total Face crops embedded.",
            "# TYPE facerep_embed_crops_total counter",
            f"facerep_embed_crops_total {crops}",
            "# HELP facerep_gallery_faces Faces in each gallery this server has opened.",
            "# TYPE facerep_gallery_faces gauge",
        ]
        lines += [
            f"facerep_gallery_faces{{gallery={_quote(name)}}} {size}"
            for name, size in sorted(gallery_faces.items())
        ]
        return "\n".join(lines) + "\n"


def _counter_lines(counts: dict[tuple[str, str, str], int]) -> list[str]:
    lines = [
        "# HELP facerep_http_requests_total HTTP requests answered.",
        "# TYPE facerep_http_requests_total counter",
    ]
    for (method, route, status), count in sorted(counts.items()):
        labels = f"method={_quote(method)},route={_quote(route)},status={_quote(status)}"
        lines.append(f"facerep_http_requests_total{{{labels}}} {count}")
    return lines


def _histogram_lines(latency: dict[tuple[str, str], tuple[list[int], float]]) -> list[str]:
    name = "facerep_http_request_duration_seconds"
    lines = [f"# HELP {name} HTTP request latency.", f"# TYPE {name} histogram"]
    for (method, route), (buckets, total) in sorted(latency.items()):
        labels = f"method={_quote(method)},route={_quote(route)}"
        cumulative = 0
        for le, count in zip([*map(str, BUCKETS), "+Inf"], buckets, strict=True):
            cumulative += count
            lines.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
        lines.append(f"{name}_sum{{{labels}}} {total:.6f}")
        lines.append(f"{name}_count{{{labels}}} {cumulative}")
    return lines


def _quote(value: str) -> str:
    """A label value, escaped as the exposition format requires."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class MetricsMiddleware:
    """Time every HTTP request and count it by method, route template and status.

    `routes` lists the routes, to name those of requests answered before routing (a 413).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[Route]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if nothing was sent, the client saw the connection fail

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            seconds = time.perf_counter() - start
            self.metrics.observe(method, self._route(scope), status, seconds)

    def _route(self, scope: Scope) -> str:
        matched = scope.get("route")  # set by the router; absent when answered before routing
        if matched is not None and hasattr(matched, "path"):
            return matched.path
        for route in self.routes:
            if route.matches(scope)[0] is not Match.NONE:
                return route.path
        return "unmatched"
