"""HTTP exposition: /metrics, /healthz, /readyz and a landing page, on a threading WSGI server."""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from exporter import __version__
from exporter.exposition import Exposition

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_app(exposition: Exposition, ready: Callable[[], bool]) -> Callable[..., Iterable[bytes]]:
    """The WSGI application of the exporter."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return _metrics(exposition, environ, start_response)
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if ready():
                return _text(start_response, "200 OK", "ready\n")
            return _text(
                start_response, "503 Service Unavailable", "not ready: first collection pending\n"
            )
        if path == "/":
            return _landing(start_response)
        return _text(start_response, "404 Not Found", "not found\n")

    return app


def _metrics(
    exposition: Exposition, environ: dict[str, Any], start_response: StartResponse
) -> list[bytes]:
    """Text format or OpenMetrics, as the Accept header asks; gzip when accepted."""
    gzip = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
    body, content_type = exposition.render(environ.get("HTTP_ACCEPT"), gzip)
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if gzip:
        headers.append(("Content-Encoding", "gzip"))
    start_response("200 OK", headers)
    return [body]


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _landing(start_response: StartResponse) -> list[bytes]:
    body = (
        "<html><head><title>Databricks jobs exporter</title></head><body>"
        f"<h1>Databricks jobs exporter</h1><p>version {html.escape(__version__)}</p><ul>"
        '<li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>'
        '<li><a href="/readyz">/readyz</a></li></ul></body></html>'
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


class MetricsServer:
    """Serves the app on a background thread until ``shutdown``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], address: str, port: int) -> None:
        self.httpd = make_server(
            address, port, app, server_class=_Server, handler_class=_QuietHandler
        )
        self.port = self.httpd.server_port
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
