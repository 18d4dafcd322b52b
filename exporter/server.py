"""HTTP exposition: /metrics, /healthz, /readyz and a landing page, served by waitress.

waitress reads requests in one event loop and runs the app on a fixed pool of threads, so idle
or slow (slowloris) connections cost a socket, never a thread; a scrape waits only for a free
worker. Content negotiation honours q-values: ``gzip;q=0`` is a refusal.

With ``--web.config.file`` (exporter-toolkit's format) the app answers with its headers,
rate limit and basic auth; with ``tls_server_config``, ``exporter.tlsfront`` serves the listen
addresses and waitress listens on a private Unix socket behind it. /healthz and /readyz stay
open without credentials (they say "ok" or "ready", nothing else), so Kubernetes probes need
no password in the pod spec.
"""

from __future__ import annotations

import html
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.request import parse_http_list

import waitress

from exporter import __version__
from exporter.config import split_address
from exporter.exposition import Exposition
from exporter.webconfig import BasicAuth, WebConfigWatch

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


OPEN_PATHS = ("/healthz", "/readyz")  # answered without credentials (probes)


def make_app(
    exposition: Exposition,
    ready: Callable[[], bool],
    telemetry_path: str = "/metrics",
    web: WebConfigWatch | None = None,
) -> Callable[..., Iterable[bytes]]:
    """The WSGI application of the exporter (behind ``web``'s headers, limit and auth)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "GET or HEAD\n")
        body = route(environ, start_response)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else body  # headers only

    def route(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == telemetry_path:
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
            return _landing(start_response, telemetry_path)
        return _text(start_response, "404 Not Found", "not found\n")

    return app if web is None else _secured(app, web)


def _secured(app: Callable[..., Iterable[bytes]], web: WebConfigWatch) -> Callable[..., Any]:
    """exporter-toolkit's handler: its headers on every answer, then its rate limit (429),
    then basic auth (401 with ``WWW-Authenticate: Basic``, never saying why)."""
    auth = BasicAuth()
    bucket = _Bucket()

    def secured(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        config, _ = web.current()

        def respond(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            names = {name.lower() for name, _ in headers}
            extra = [(k, v) for k, v in config.headers if k.lower() not in names]
            return start_response(status, headers + extra, *exc)

        probe = environ.get("PATH_INFO", "/") in OPEN_PATHS  # never limited, never challenged
        if not probe and config.rate_limit is not None and not bucket.take(config.rate_limit):
            return _text(respond, "429 Too Many Requests", "Too Many Requests\n")
        if (
            config.users
            and not probe
            and not auth.check(config.users, environ.get("HTTP_AUTHORIZATION", ""))
        ):

            def challenge(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                return respond(status, [*headers, ("WWW-Authenticate", "Basic")], *exc)

            return _text(challenge, "401 Unauthorized", "Unauthorized\n")
        return app(environ, respond)

    return secured


class _Bucket:
    """A token bucket: ``burst`` requests at once, then one per ``interval_seconds``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = -1.0
        self._at = time.monotonic()

    def take(self, limit: Any) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._tokens < 0:
                self._tokens = float(limit.burst)
            self._tokens = min(
                float(limit.burst), self._tokens + (now - self._at) / limit.interval_seconds
            )
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


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


def _landing(start_response: StartResponse, telemetry_path: str = "/metrics") -> list[bytes]:
    metrics = html.escape(telemetry_path)
    body = (
        "<html><head><title>Databricks jobs exporter</title></head><body>"
        f"<h1>Databricks jobs exporter</h1><p>version {html.escape(__version__)}</p><ul>"
        f'<li><a href="{metrics}">{metrics}</a></li><li><a href="/healthz">/healthz</a></li>'
        '<li><a href="/readyz">/readyz</a></li></ul></body></html>'
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def bind(address: str) -> socket.socket:
    """A listening socket for a --web.listen-address; ``:port`` is IPv6 and IPv4 where the host
    has IPv6, else IPv4 (as Go's net.Listen does). OSError names nothing: the caller does."""
    host, port = split_address(address)
    if not host:
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            candidates: list[tuple[socket.socket, Any]] = [(sock, ("::", port))]
        except OSError:
            candidates = [(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port))]
    else:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, where = infos[0]
        candidates = [(socket.socket(family, kind, proto), where)]
    sock, where = candidates[0]
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class MetricsServer:
    """Serves the app on background threads until ``shutdown``: waitress on the listen
    addresses, or, with TLS, the TLS front on them and waitress on a private Unix socket."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        addresses: Sequence[str] = ("127.0.0.1:0",),
        web: WebConfigWatch | None = None,
    ) -> None:
        self.sockets: list[socket.socket] = []
        try:
            for address in addresses:
                self.sockets.append(bind(address))
        except OSError:
            for sock in self.sockets:
                sock.close()
            raise
        self.tls = web is not None and web.context is not None
        self.port = int(self.sockets[0].getsockname()[1])
        self.urls = [_url(sock, self.tls) for sock in self.sockets]
        self._front: Any = None
        self._folder: str | None = None
        options = dict(
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
        if self.tls:
            from exporter.tlsfront import TLSFront

            assert web is not None
            self._folder = tempfile.mkdtemp(prefix="databricks-exporter-")  # mode 0700
            upstream = os.path.join(self._folder, "http.sock")
            self.httpd: Any = waitress.create_server(
                app, unix_socket=upstream, unix_socket_perms="600", **options
            )
            self._front = TLSFront(self.sockets, upstream, web, CONNECTION_LIMIT, BACKLOG)
        else:
            self.httpd = waitress.create_server(app, sockets=self.sockets, **options)
        self._thread = threading.Thread(target=self.httpd.run, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if self._front is not None:
            self._front.start()

    def shutdown(self) -> None:
        if self._front is not None:
            self._front.shutdown()
            for sock in self.sockets:  # the front listened on duplicates of them
                sock.close()
        self.httpd.task_dispatcher.shutdown(timeout=2)
        self.httpd.close()
        if self._folder is not None:
            for name in os.listdir(self._folder):
                os.unlink(os.path.join(self._folder, name))
            os.rmdir(self._folder)


def _url(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"
