"""The operations endpoint: ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus text).

A standard-library :class:`~http.server.ThreadingHTTPServer` on a daemon thread,
bound to loopback by default (``daemon.http_host``/``daemon.http_port``). The
pages are produced by callables of the daemon, so the server knows nothing about
the pipeline. ``/health`` answers 200 when ``ok`` or ``degraded`` and 503 when
``failing`` (usable as a probe). A page that raises answers 500 with the error
and is logged; the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dsa_stream.daemon.metrics import CONTENT_TYPE
from dsa_stream.exceptions import ConfigError

logger = logging.getLogger(__name__)

HealthPage = Callable[[], dict[str, Any]]
MetricsPage = Callable[[], str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    health_page: HealthPage
    metrics_page: MetricsPage


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "dsa-stream"

    def _send(self, code: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        try:
            if path == "/health":
                doc = self.server.health_page()
                code = 503 if doc.get("status") == "failing" else 200
                self._send(code, json.dumps(doc, default=str) + "\n", "application/json")
            elif path == "/metrics":
                self._send(200, self.server.metrics_page(), CONTENT_TYPE)
            else:
                self._send(404, "not found: try /health or /metrics\n", "text/plain")
        except Exception as exc:  # a broken page must not kill the server
            logger.exception("GET %s failed", path)
            self._send(500, f"error: {type(exc).__name__}: {exc}\n", "text/plain")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        logger.debug("http %s: " + format, self.client_address[0], *args)


class OpsServer:
    """Serves ``/health`` and ``/metrics`` from a background thread.

    Args:
        host: Address to bind (loopback by default in the configuration).
        port: TCP port; 0 picks a free one (see :attr:`address`).
        health_page: Returns the health document.
        metrics_page: Returns the Prometheus text.

    Raises:
        ConfigError: when the address cannot be bound (port in use, bad host).
    """

    def __init__(
        self, host: str, port: int, health_page: HealthPage, metrics_page: MetricsPage
    ) -> None:
        try:
            self._server = _Server((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve /health and /metrics on {host}:{port}: {exc} "
                "(set daemon.http_port to a free port, or 0 to turn the endpoint off)"
            ) from exc
        self._server.health_page = health_page
        self._server.metrics_page = metrics_page
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="dsa-http"
        )
        self._thread.daemon = True

    @property
    def address(self) -> str:
        """``host:port`` actually bound."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        """Start serving."""
        self._thread.start()
        logger.info("serving /health and /metrics on http://%s", self.address)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
