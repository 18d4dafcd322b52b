"""HTTP exposition: /metrics, /healthz, /readyz and a landing page, served by waitress.

waitress reads requests in one event loop and runs the app on a fixed pool of threads, so idle
or slow (slowloris) connections cost a socket, never a thread; a scrape waits only for a free
worker. Content negotiation honours q-values: ``gzip;q=0`` is a refusal.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.request import parse_http_list

import waitress

from exporter import __version__
from exporter.exposition import Exposition

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


THREADS = 8  # scrapes answered at once; renders are cached, so a scrape takes milliseconds
CONNECTION_LIMIT = 4096  # open connections (idle ones cost a socket and a small buffer)
BACKLOG = 1024  # connections the kernel queues before accept
IDLE_TIMEOUT = 15  # seconds a connection may stay silent (Prometheus' default scrape timeout: 10)
MAX_HEADER_BYTES = 16 << 10


def _accepted(header: str) -> dict[str, float]:
    """{value: q} of an Accept or Accept-Encoding header (RFC 9110 weights; default q=1)."""
    out: dict[str, float] = {}
    for item in parse_http_list(header or ""):
        value, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(raw)
                except ValueError:
                    q = 0.0
        if value:
            out[value.lower()] = q
    return out


def wants_gzip(accept_encoding: str) -> bool:
    """Whether the client accepts gzip: listed (or "*") with a weight above 0."""
    weights = _accepted(accept_encoding)
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def negotiable_accept(accept: str) -> str:
    """The Accept header without the media types it refuses (q=0), for prometheus-client."""
    return ", ".join(
        item
        for item in parse_http_list(accept or "")
        if _accepted(item) and min(_accepted(item).values()) > 0
    )


def make_app(exposition: Exposition, ready: Callable[[], bool]) -> Callable[..., Iterable[bytes]]:
    """The WSGI application of the exporter."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "GET or HEAD\n")
        body = route(environ, start_response)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else body  # headers only

    def route(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
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
    gzip = wants_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
    accept = negotiable_accept(environ.get("HTTP_ACCEPT", ""))
    body, content_type = exposition.render(accept, gzip)
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Vary", "Accept, Accept-Encoding"),
    ]
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
        self.httpd: Any = waitress.create_server(
            app,
            host=address,
            port=port,
            threads=THREADS,
            connection_limit=CONNECTION_LIMIT,
            backlog=BACKLOG,
            channel_timeout=IDLE_TIMEOUT,
            cleanup_interval=5,
            max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=MAX_HEADER_BYTES,
            ident="databricks-jobs-exporter",
            clear_untrusted_proxy_headers=True,
            expose_tracebacks=False,
            asyncore_use_poll=True,  # select() stops at 1,024 descriptors
        )
        self.port = int(self.httpd.effective_port)
        self._thread = threading.Thread(target=self.httpd.run, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self.httpd.task_dispatcher.shutdown(timeout=2)
        self.httpd.close()
