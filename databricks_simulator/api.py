"""The simulated workspace's API over HTTP on loopback: the handlers and their faults.

Shapes and limits follow the real Jobs API 2.2 and Instance Pools API 2.0: runs/list
``limit`` 1..25 (400 past it), opaque page tokens, active_only / completed_only,
start_time_from / start_time_to, expand_tasks, runs/get, jobs/list, instance-pools list/get,
bearer-token check, 429 with Retry-After and 5xx injection, latency.

Control endpoints for tests and benchmarks live under ``/sim/`` (truth, stop, faults, stats,
clock), and the Pipelines API 2.0 (databricks_simulator.pipelines).
"""

from __future__ import annotations

import base64
import bisect
import email.utils
import json
import logging
import random
import secrets
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from databricks_simulator.jobsettings import listed_jobs
from databricks_simulator.pipelines import page as pipeline_page
from databricks_simulator.ratelimit import TokenBucket
from databricks_simulator.world import TASK_PAGE, SimRun, SimWorkspace

log = logging.getLogger(__name__)


@dataclass
class FaultRule:
    """Answer the next ``count`` matching requests with a failure instead of the API."""

    path_prefix: str = "/api/"
    status: int = 503
    count: int = 1
    retry_after: float | None = None
    # json | html | truncated | empty | reset (connection reset, no response) | trickle (a
    # complete answer sent a byte every `delay` seconds, as a stalled proxy does) | date (the
    # usual answer, with `date` as its Date header: a proxy's or a server's wrong clock)
    body: str = "json"
    delay: float = 0.0
    date: str = ""


@dataclass
class SimStats:
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    runs_served: int = 0  # run objects in runs/list and runs/get answers (what a client reads)


class ApiFailure(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def _bool(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise ApiFailure(400, "INVALID_PARAMETER_VALUE", f"Invalid value for {name}: {value!r}")
    return value == "true"


def _page_limit(params: dict[str, str], most: int, zero_means: int) -> int:
    """A listing's ``limit`` (default 20) as the API checks it: 400 past ``most``."""
    limit = _int_param(params, "limit", 20)
    assert limit is not None
    if limit < 0 or limit > most:
        raise ApiFailure(
            400, "INVALID_PARAMETER_VALUE", f"The limit field must be between 1 and {most}."
        )
    return limit or zero_means


def _int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    if name not in params:
        return default
    try:
        return int(params[name])
    except ValueError:
        raise ApiFailure(400, "INVALID_PARAMETER_VALUE", f"Invalid value for {name}") from None


def _listed(
    run: SimRun, now: int, active_only: bool, completed_only: bool, lag_ms: int = 0
) -> bool:
    """Whether runs/list shows the run yet, and its active_only / completed_only filters let
    it through."""
    if now < run.start_ms + lag_ms:
        return False
    done = run.done(now)
    return not (active_only and done) and not (completed_only and not done)


def _encode_cursor(run: SimRun) -> str:
    raw = json.dumps([run.start_ms, run.run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_offset(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        return int(json.loads(base64.urlsafe_b64decode(padded))["o"])
    except Exception:
        raise ApiFailure(400, "INVALID_PARAMETER_VALUE", "Invalid page token") from None


def _decode_cursor(token: str) -> tuple[int, int]:
    try:
        padded = token + "=" * (-len(token) % 4)
        start, run_id = json.loads(base64.urlsafe_b64decode(padded))
        return int(start), int(run_id)
    except Exception:
        raise ApiFailure(400, "INVALID_PARAMETER_VALUE", "Invalid page token") from None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("simulator: connection from %s ended abruptly", client_address)


class SimServer:
    """The simulated workspace served over HTTP on 127.0.0.1; ``url`` and ``token`` to use it."""

    def __init__(
        self, model: SimWorkspace | None = None, port: int = 0, token: str | None = None
    ) -> None:
        self.model = model or SimWorkspace()
        self.token = token or "dapi-sim-" + secrets.token_hex(16)
        self.tokens = {self.token}
        self.stats = SimStats()
        self.faults: list[FaultRule] = []
        self.fault_rate = 0.0
        # Run objects added to the first page of every runs/list answer (hostile-input tests).
        self.extra_runs: list[Any] = []
        self.trickled_bytes = 0  # bytes sent by `trickle` faults
        # Requests a second the workspace accepts before answering 429 (None: no limit).
        self.rate_limiter: TokenBucket | None = None
        self._listings: dict[tuple[Any, ...], tuple[list[tuple[int, int]], list[SimRun]]] = {}
        self._rng = random.Random(self.model.config.seed)
        self._lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="simulator", daemon=True
        )

    def start(self) -> SimServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_faults(self, *rules: FaultRule) -> None:
        with self._lock:
            self.faults.extend(rules)

    def take_fault(self, path: str) -> FaultRule | None:
        with self._lock:
            limiter = self.rate_limiter
            if limiter is not None and path.startswith("/api/") and limiter.try_acquire() > 0:
                self.stats.faults["429"] += 1
                return FaultRule(status=429, retry_after=1)
            for rule in self.faults:
                if rule.count > 0 and path.startswith(rule.path_prefix):
                    rule.count -= 1
                    self.stats.faults[str(rule.status)] += 1
                    return rule
            self.faults = [r for r in self.faults if r.count > 0]
            if (
                self.fault_rate
                and path.startswith("/api/")
                and self._rng.random() < self.fault_rate
            ):
                status = self._rng.choice((429, 500, 503))
                self.stats.faults[str(status)] += 1
                return FaultRule(status=status, retry_after=0 if status == 429 else None)
        return None

    def count(self, path: str) -> None:
        with self._lock:
            self.stats.requests[path] += 1

    def _served(self, runs: int) -> None:
        with self._lock:
            self.stats.runs_served += runs

    def requests_total(self) -> int:
        with self._lock:
            return sum(self.stats.requests.values())

    # --- API endpoints ---------------------------------------------------------------------

    def api(self, path: str, params: dict[str, str], now: int | None = None) -> dict[str, Any]:
        m = self.model
        now = m.clock.now_ms() if now is None else now
        if path in ("/api/2.2/jobs/runs/list", "/api/2.1/jobs/runs/list"):
            return self._runs_list(params, now)
        if path in ("/api/2.2/jobs/runs/get", "/api/2.1/jobs/runs/get"):
            return self._runs_get(params, now)
        if path == "/api/2.0/instance-pools/list":
            return {"instance_pools": m.pools_json(now)}
        if path in ("/api/2.2/jobs/list", "/api/2.1/jobs/list"):
            return self._jobs_list(params)
        if path == "/api/2.0/pipelines" or path.startswith("/api/2.0/pipelines/"):
            return self._pipelines(path, params, now)
        raise ApiFailure(404, "ENDPOINT_NOT_FOUND", f"No API found for 'GET {path}'")

    def _pipelines(self, path: str, params: dict[str, str], now: int) -> dict[str, Any]:
        """GET /api/2.0/pipelines, /pipelines/{id}/updates and /pipelines/{id}/events."""
        world = self.model.pipelines
        parts = path.split("/")[4:]  # after /api/2.0/pipelines
        try:
            if not parts:
                statuses = [world.pipeline_json(p, now) for p in range(world.count)]
                body = pipeline_page(statuses, params, 25, 100, prev=False)
                return {"statuses": body.pop("items"), **body} if statuses else body_of(body)
            p = world.index(parts[0])
            if p is None or len(parts) != 2 or parts[1] not in ("updates", "events"):
                raise ApiFailure(
                    404, "RESOURCE_DOES_NOT_EXIST", f"Pipeline {parts[0][:40]} does not exist."
                )
            updates = world.updates_desc(p, now)
            if parts[1] == "updates":
                body = pipeline_page([world.update_json(u, now) for u in updates], params, 25, 100)
                return {"updates": body.pop("items"), **body}
            errors = [world.error_event(u) for u in updates if u.state(now) == "FAILED"]
            body = pipeline_page(errors, params, 25, 250)
            return {"events": body.pop("items"), **body}
        except ValueError as exc:
            raise ApiFailure(400, "INVALID_PARAMETER_VALUE", str(exc)) from None

    def _runs_get(self, params: dict[str, str], now: int) -> dict[str, Any]:
        m = self.model
        run_id = _int_param(params, "run_id")
        run = m.find_run(run_id) if run_id is not None else None
        if run is None:
            # What Databricks answers for a run that is gone with its job (not a 404).
            raise ApiFailure(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        history = _bool(params, "include_history")
        body = m.run_json(run, now, m.config.public_host, expand_tasks=True, history=history)
        # Arrays of more than 100 items come 100 a page; later pages carry only those arrays.
        offset = _decode_offset(params["page_token"]) if params.get("page_token") else 0
        tasks = body.get("tasks") or []
        if offset:
            body = {"tasks": tasks[offset : offset + TASK_PAGE]}
        else:
            body["tasks"] = tasks[:TASK_PAGE]
        if len(tasks) > offset + TASK_PAGE:
            body["next_page_token"] = _encode_offset(offset + TASK_PAGE)
        if not body["tasks"]:
            del body["tasks"]
        self._served(1)
        return body

    def _jobs_list(self, params: dict[str, str]) -> dict[str, Any]:
        """Jobs that exist (a runs/submit run's job is not listed) with their settings
        (databricks_simulator.jobsettings), idle ones last, 100 a page at most."""
        m = self.model
        limit = _page_limit(params, most=100, zero_means=20)
        offset = _decode_offset(params["page_token"]) if params.get("page_token") else 0
        listed = listed_jobs(m)
        page = listed[offset : offset + limit]
        body: dict[str, Any] = {
            "jobs": [
                {
                    "job_id": job.job_id,
                    "creator_user_name": "simulator@example.com",
                    "created_time": m.origin_ms,
                    "settings": promise.settings,
                }
                for job, promise in page
            ],
            "has_more": len(listed) > offset + limit,
        }
        if body["has_more"]:
            body["next_page_token"] = _encode_offset(offset + limit)
        return body

    def _runs_list(self, params: dict[str, str], now: int) -> dict[str, Any]:
        m = self.model
        limit = _page_limit(params, most=25, zero_means=25)
        active_only = _bool(params, "active_only")
        completed_only = _bool(params, "completed_only")
        if active_only and completed_only:
            raise ApiFailure(
                400,
                "INVALID_PARAMETER_VALUE",
                "active_only and completed_only cannot both be true.",
            )
        expand = _bool(params, "expand_tasks")
        lo = _int_param(params, "start_time_from", 0) or 0
        hi = _int_param(params, "start_time_to", now) or now
        job_id = _int_param(params, "job_id")
        if active_only:
            lo = max(lo, now - m.max_duration_ms)
        cursor = _decode_cursor(params["page_token"]) if params.get("page_token") else None
        if m.clock.frozen:
            page, more = self._cached_page(
                lo, hi, job_id, active_only, completed_only, now, cursor, limit
            )
        else:
            page, more = [], False
            for run in m.runs_desc(lo, hi, cursor, job_id):
                if not _listed(run, now, active_only, completed_only, m.listing_lag_ms(run)):
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(run)
        self._served(len(page))
        runs = [m.run_json(r, now, m.config.public_host, expand) for r in page]
        for listed in runs:
            if len(listed.get("tasks") or ()) > TASK_PAGE:
                listed["tasks"] = listed["tasks"][:TASK_PAGE]  # runs/get pages the rest
                listed["has_more"] = True
        if cursor is None and self.extra_runs:
            runs = [*self.extra_runs, *runs]
        body: dict[str, Any] = {"runs": runs, "has_more": more}
        if more:
            body["next_page_token"] = _encode_cursor(page[-1])
        if cursor is not None:
            body["prev_page_token"] = params["page_token"]
        if not runs:
            del body["runs"]  # the real API omits empty lists
        return body

    def _cached_page(
        self,
        lo: int,
        hi: int,
        job_id: int | None,
        active_only: bool,
        completed_only: bool,
        now: int,
        cursor: tuple[int, int] | None,
        limit: int,
    ) -> tuple[list[SimRun], bool]:
        """On a frozen clock every page of a listing is cut from one sorted list (benchmarks)."""
        key = (lo, hi, job_id, active_only, completed_only, now)
        with self._lock:
            hit = self._listings.get(key)
        if hit is None:
            runs = [
                r
                for r in self.model.runs_desc(lo, hi, None, job_id)
                if _listed(r, now, active_only, completed_only, self.model.listing_lag_ms(r))
            ]
            hit = ([(-r.start_ms, -r.run_id) for r in runs], runs)
            with self._lock:
                self._listings[key] = hit
                while len(self._listings) > 8:
                    self._listings.pop(next(iter(self._listings)))
        keys, runs = hit
        start = bisect.bisect_right(keys, (-cursor[0], -cursor[1])) if cursor else 0
        return runs[start : start + limit], start + limit < len(runs)

    def control(
        self, method: str, path: str, payload: dict[str, Any], params: dict[str, str]
    ) -> Any:
        m = self.model
        if path == "/sim/truth":
            after = _int_param(params, "after_ms", 0) or 0
            return m.truth(after, _int_param(params, "until_ms"))
        if path == "/sim/truth/pools":
            until = _int_param(params, "until_ms") or m.clock.now_ms()
            return m.pool_truth(_int_param(params, "from_ms", 0) or 0, until)
        if path == "/sim/stats":
            with self._lock:
                requests = dict(self.stats.requests)
                faults = dict(self.stats.faults)
            return {
                "requests": requests,
                "faults": faults,
                "runs_served": self.stats.runs_served,
                "now_ms": m.clock.now_ms(),
                "active": m.active_count(),
                "history": m.history_size(),
                "stop_ms": m.stop_ms,
            }
        if path == "/sim/clock" and method == "POST":
            # Moves a frozen clock from another process (benchmarks run the simulator apart).
            if not m.clock.frozen:
                raise ApiFailure(400, "INVALID_STATE", "the simulator's clock is not frozen")
            if "set" in payload:
                m.clock.set(float(payload["set"]))
            m.clock.advance(float(payload.get("advance", 0)))
            return {"now_ms": m.clock.now_ms()}
        if path == "/sim/stop" and method == "POST":
            m.stop_ms = m.clock.now_ms()
            return {"stop_ms": m.stop_ms}
        if path == "/sim/faults" and method == "POST":
            self.add_faults(*(FaultRule(**rule) for rule in payload.get("rules", [])))
            if "rate" in payload:
                self.fault_rate = float(payload["rate"])
            return {"queued": len(self.faults), "rate": self.fault_rate}
        if path == "/sim/jobs/delete" and method == "POST":
            return {"deleted": m.delete_job(int(payload.get("job_id", 0)))}
        if path == "/sim/pools/delete" and method == "POST":
            m.deleted_pools.add(str(payload.get("pool_id")))
            return {"deleted": sorted(m.deleted_pools)}
        raise ApiFailure(404, "ENDPOINT_NOT_FOUND", f"No simulator control at {method} {path}")


def _make_handler(server: SimServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes
        _now = 0.0  # the simulated time of the request being answered
        _date = ""  # a Date header other than the clock's (FaultRule body "date")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("simulator: " + format, *args)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def date_time_string(self, timestamp: float | None = None) -> str:
            # The Date header is the simulated clock's, read once per request with the body.
            return self._date or email.utils.formatdate(self._now, usegmt=True)

        def _handle(self, method: str) -> None:
            self._now = server.model.clock.time()
            self._date = ""
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                if parts.path.startswith("/sim/"):
                    payload = json.loads(raw or b"{}")
                    self._json(200, server.control(method, parts.path, payload, params))
                    return
                server.count(parts.path)
                if server.model.config.latency_ms:
                    time.sleep(server.model.config.latency_ms / 1000.0)
                if self.headers.get("Authorization", "") not in {
                    f"Bearer {t}" for t in server.tokens
                }:
                    raise ApiFailure(401, "UNAUTHENTICATED", "Invalid access token.")
                fault = server.take_fault(parts.path)
                if fault is not None and fault.body == "date":
                    self._date, fault = fault.date, None
                if fault is not None:
                    self._fault(fault)
                    return
                if method != "GET":
                    raise ApiFailure(405, "METHOD_NOT_ALLOWED", f"{method} not allowed")
                self._json(200, server.api(parts.path, params, int(self._now * 1000)))
            except ApiFailure as exc:
                self._json(exc.status, {"error_code": exc.error_code, "message": exc.message})
            except (ConnectionError, BrokenPipeError):
                pass

        def _fault(self, rule: FaultRule) -> None:
            if rule.body == "trickle":
                self._trickle(rule.delay or 1.0)
                return
            if rule.delay:
                time.sleep(rule.delay)
            if rule.body == "reset":
                # SO_LINGER 0: close() sends RST, as a load balancer dropping the connection does.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                return
            headers = {}
            if rule.retry_after is not None:
                headers["Retry-After"] = str(int(rule.retry_after))
            if rule.body == "html":
                data = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                self._send(rule.status, data, "text/html", headers)
            elif rule.body == "truncated":
                self._send(
                    rule.status, b'{"runs": [{"run_id": 1, "sta', "application/json", headers
                )
            elif rule.body == "empty":
                self._send(rule.status, b"", "application/json", headers)
            else:
                code = {429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE"}.get(
                    rule.status, "INTERNAL_ERROR"
                )
                data = json.dumps(
                    {"error_code": code, "message": f"simulated {rule.status}"}
                ).encode()
                self._send(rule.status, data, "application/json", headers)

        def _trickle(self, interval: float) -> None:
            data = json.dumps({"runs": [], "instance_pools": [], "has_more": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.flush()
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    server.trickled_bytes += 1
                    time.sleep(interval)
            except OSError:
                self.close_connection = True  # the client hung up: what a deadline does

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode(), "application/json", {})

        def _send(
            self, status: int, data: bytes, content_type: str, headers: dict[str, str]
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def body_of(page: dict[str, Any]) -> dict[str, Any]:
    """A Pipelines listing without items: no ``statuses`` at all, as the API answers."""
    page.pop("items", None)
    return page
