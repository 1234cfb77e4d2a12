"""Prometheus metrics and a health check for `syncd run` (`[metrics] listen`)."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from syncd.pickup import PassResult


class Metrics:
    """The daemon's counters and gauges, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.files = Counter(
            "syncd_files",
            "Files handled, by source and outcome.",
            ["source", "status"],
            registry=self.registry,
        )
        self.rows_rejected = Counter(
            "syncd_rows_rejected", "Rows rejected.", ["source"], registry=self.registry
        )
        self.up = Gauge(
            "syncd_source_up",
            "1 when the source's last poll succeeded, else 0.",
            ["source"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "syncd_source_last_success_timestamp_seconds",
            "When the source was last polled successfully (Unix time).",
            ["source"],
            registry=self.registry,
        )
        self.waiting = Gauge(
            "syncd_source_files_waiting",
            "Files seen but not complete yet (min_age, marker, dependency), or left in "
            "processing/ by a stop for the next pass.",
            ["source"],
            registry=self.registry,
        )
        self.leading = Gauge(
            "syncd_source_leading",
            "1 while this daemon works the source (it holds the source's lock), 0 while it "
            "stands by because another syncd process does.",
            ["source"],
            registry=self.registry,
        )
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def polled(self, source: str, result: PassResult, when: float) -> None:
        for outcome in result.results:
            self.files.labels(source, outcome.status.value).inc()
            self.rows_rejected.labels(source).inc(outcome.counts.rejected)
        self.up.labels(source).set(1)
        self.last_success.labels(source).set(when)
        self.waiting.labels(source).set(result.waiting)
        with self._lock:
            self._errors.pop(source, None)

    def failed(self, source: str, error: str) -> None:
        self.up.labels(source).set(0)
        with self._lock:
            self._errors[source] = error

    def lead(self, source: str, leading: bool) -> None:
        self.leading.labels(source).set(1 if leading else 0)

    def forget(self, source: str) -> None:
        """Drop a source taken out of the configuration: its gauges and its error (a
        failing source removed by a reload must not keep /healthz at 503)."""
        for gauge in (self.up, self.last_success, self.waiting, self.leading):
            with contextlib.suppress(KeyError):  # never polled
                gauge.remove(source)
        with self._lock:
            self._errors.pop(source, None)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Return (healthy, document): healthy while no source's last poll failed."""
        with self._lock:
            errors = dict(self._errors)
        return not errors, {"status": "ok" if not errors else "degraded", "errors": errors}


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics

    def do_GET(self) -> None:  # noqa: N802 - the http.server naming
        if self.path.split("?")[0] == "/metrics":
            body, status, kind = generate_latest(self.metrics.registry), 200, CONTENT_TYPE_LATEST
        elif self.path.split("?")[0] == "/healthz":
            healthy, document = self.metrics.health()
            body = json.dumps(document).encode()
            status, kind = (200 if healthy else 503), "application/json"
        else:
            body, status, kind = b"not found\n", 404, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None  # requests are not audit events


def serve(metrics: Metrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on a daemon thread; return the server (to shut down)."""
    handler = type("Handler", (_Handler,), {"metrics": metrics})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
