"""A small Databricks REST client: one session per workspace, retries, pagination, clear errors.

Retries are urllib3's ``Retry`` (exponential backoff with jitter, Retry-After honoured and
capped, a bounded number of attempts) on connection errors, timeouts, 429 and 5xx. The client
counts its own requests and retries in ``WorkspaceHealth`` and knows nothing else of metrics.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError
from urllib3.util.retry import Retry

from exporter.auth import AuthError, DatabricksAuth
from exporter.health import WorkspaceHealth
from exporter.ids import normalise_run_id
from exporter.logsetup import log_context
from exporter.redact import redact
from exporter.servertime import ServerClock

log = logging.getLogger(__name__)

RUNS_PER_PAGE = 25  # runs/list's largest page
RUNS_LIST = "/api/2.2/jobs/runs/list"
RUNS_GET = "/api/2.2/jobs/runs/get"
JOBS_LIST = "/api/2.2/jobs/list"
JOBS_PAGE_LIMIT = 100  # the API refuses more
POOLS_LIST = "/api/2.0/instance-pools/list"
RUNS_PAGE_LIMIT = RUNS_PER_PAGE  # the API refuses more
# A page of 25 runs with 100 tasks each is a few MB; past this a response is not an API page.
DEFAULT_MAX_RESPONSE_BYTES = 16 << 20
RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "databricks-jobs-exporter"
# The messages the Databricks SDK recognises as "run not found" behind a 400.
_DOES_NOT_EXIST = re.compile(r"Run .* does not exist|Run: .* in job: .* doesn't exist")


class ApiError(Exception):
    """A Databricks API call failed; the message carries workspace, endpoint, status and body."""

    endpoint: str | None = None  # the path that failed (a log line's endpoint field)

    def __init__(self, message: str, status: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class PageLimit(ApiError):
    """A listing had more pages than it may read; the items before were yielded."""


class CountingRetry(Retry):
    """urllib3's Retry that reports each retry it decides to make."""

    def __init__(self, *args: Any, on_retry: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_retry = on_retry

    def new(self, **kw: Any) -> CountingRetry:
        retry = super().new(**kw)
        retry.on_retry = self.on_retry
        return retry

    def increment(
        self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None
    ):  # type: ignore[no-untyped-def,override]
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.on_retry is not None:
            self.on_retry(urlsplit(url or "").path, _retry_reason(response, error))
        return retry


def _retry_reason(response: Any, error: Exception | None) -> str:
    if response is not None and getattr(response, "status", None):
        return str(response.status)
    deadline = getattr(_LOCAL, "deadline", None)
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError) or (
        deadline is not None and deadline.attempt_expired
    ):
        return "timeout"
    return "connection_error"


class RateLimiter:
    """A token bucket: at most ``rate`` requests a second on average, bursts of ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, int(rate)))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take a token and return 0, or return how long to wait for one (taking nothing)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1 - 1e-9:  # float dust must not stall the bucket
                self._tokens = max(self._tokens - 1, 0.0)
                return 0.0
            return max((1 - self._tokens) / self.rate, 0.001)

    def acquire(self) -> None:
        """Block until a token is taken."""
        while (wait := self.try_acquire()) > 0:
            self._sleep(wait)


class DeadlineWatch:
    """One thread for every request's deadline (a heap of times), instead of a timer thread per
    request: a process with 100 workspaces sends thousands of requests a minute."""

    _instance: DeadlineWatch | None = None
    _create = threading.Lock()

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._next = 0
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="request-deadlines", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> DeadlineWatch:
        with cls._create:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def arm(self, seconds: float, expire: Callable[[], None]) -> int:
        with self._cv:
            self._next += 1
            heapq.heappush(self._heap, (time.monotonic() + seconds, self._next, expire))
            self._cv.notify()
            return self._next

    def cancel(self, handle: int) -> None:
        with self._cv:
            self._cancelled.add(handle)

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._heap and self._heap[0][1] in self._cancelled:
                    self._cancelled.discard(heapq.heappop(self._heap)[1])
                if not self._heap:
                    self._cv.wait()
                    continue
                due, _, expire = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                heapq.heappop(self._heap)
            try:
                expire()
            except Exception:  # a deadline callback must never stop the watch
                log.debug("request deadline callback failed", exc_info=True)


class RequestDeadline:
    """A total deadline for one attempt of a request: connect, headers and body.

    requests' ``timeout`` bounds each socket read, so a server that trickles a byte every few
    seconds keeps a request alive for hours. The shared watch shuts the attempt's socket down
    when its deadline passes; the read fails, urllib3's Retry decides as for any broken
    connection.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False  # some attempt ran out of time
        self.attempt_expired = False  # the current attempt did
        self._handle: int | None = None

    def arm(self, conn: Any) -> None:
        self.disarm()
        self.attempt_expired = False
        self._handle = DeadlineWatch.shared().arm(self.seconds, lambda: self._expire(conn))

    def disarm(self) -> None:
        if self._handle is not None:
            DeadlineWatch.shared().cancel(self._handle)
            self._handle = None

    def _expire(self, conn: Any) -> None:
        self.expired = self.attempt_expired = True
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_LOCAL = threading.local()  # the RequestDeadline of the request this thread is sending


class _ArmsDeadline:
    """Mixin for urllib3 connections: each attempt (retries included) arms the whole budget."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = getattr(_LOCAL, "deadline", None)
        if deadline is not None:
            deadline.arm(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _DeadlineConnection(_ArmsDeadline, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_ArmsDeadline, HTTPSConnection):
    pass


class _DeadlinePool(HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOLS = {"http": _DeadlinePool, "https": _DeadlineHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connections that honour the thread's RequestDeadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


class DatabricksClient:
    """GET requests against one workspace, returning parsed JSON objects."""

    def __init__(
        self,
        workspace: str,
        host: str,
        auth: DatabricksAuth,
        health: WorkspaceHealth,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_pages: int = 20_000,
        backoff_factor: float = 0.5,
        max_requests_per_second: float = 0.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        server_clock: ServerClock | None = None,
    ) -> None:
        self.workspace = workspace
        self.server_clock = server_clock or ServerClock(workspace)
        self.host = host.rstrip("/")
        self.health = health
        self.max_pages = max_pages
        self.max_response_bytes = max_response_bytes
        self.closed = False
        self._auth = auth
        self._limiter = (
            RateLimiter(max_requests_per_second) if max_requests_per_second > 0 else None
        )
        self._timeout = (min(10.0, timeout), timeout)
        retry = CountingRetry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=30.0,
            backoff_jitter=backoff_factor,
            retry_after_max=60,
            raise_on_status=False,
            respect_retry_after_header=True,
            on_retry=health.count_retry,
        )
        self.session = requests.Session()
        adapter = _DeadlineAdapter(max_retries=retry, pool_connections=1, pool_maxsize=4)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        # Read HTTPS_PROXY / NO_PROXY / REQUESTS_CA_BUNDLE once, not on every request: requests
        # re-scans the whole environment per request otherwise (17% of a busy cycle's CPU).
        env = self.session.merge_environment_settings(self.host, {}, None, None, None)
        self.session.proxies.update(env["proxies"])
        self.session.verify = env["verify"]
        self.session.trust_env = False

    def close(self) -> None:
        """Stop: requests after this raise at once (between pages of a running collection too)."""
        self.closed = True
        self.session.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET a JSON object; one retry with a fresh token after a 401."""
        return self.get_dated(path, params)[0]

    def get_dated(
        self, path: str, params: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], int | None]:
        """``get``, and when Databricks answered by its own clock (ms): the ``Date`` header as
        checked by ``server_clock``; None with no Date yet trusted."""
        with log_context(endpoint=path):
            try:
                response = self._send(path, params)
                if response.status_code == 401 and self._auth is not None:
                    self._auth.invalidate()
                    response = self._send(path, params)
                body = self._parse(path, response)
            except ApiError as exc:
                exc.endpoint = exc.endpoint or path
                raise
        return body, self.server_clock.read(_date_ms(response.headers.get("Date")))

    def _send(self, path: str, params: dict[str, Any] | None) -> requests.Response:
        where = f"workspace {self.workspace}: GET {path}"
        if self.closed:
            raise ApiError(f"{where}: exporter is shutting down")
        if self._limiter is not None:
            self._limiter.acquire()
        deadline = _LOCAL.deadline = RequestDeadline(self._timeout[1])
        try:
            response = self.session.get(
                self.host + path,
                params=_wire(params),
                auth=self._auth,
                timeout=self._timeout,
                stream=True,  # the body is read here, within the deadline and the size cap
            )
            self._read_capped(response, path, where)
        except AuthError as exc:
            raise ApiError(f"{where}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            self.health.count_request(path, "error")
            if deadline.expired:
                raise ApiError(
                    f"{where}: no complete answer within the {self._timeout[1]:g}s deadline "
                    "(a slow or stalled response)"
                ) from None
            if isinstance(exc, requests.exceptions.RetryError):
                raise ApiError(f"{where}: gave up after retries ({_cause(exc)})") from None
            if isinstance(exc, requests.exceptions.Timeout):
                raise ApiError(
                    f"{where}: timed out after {self._timeout[1]:g}s and retries"
                ) from None
            raise ApiError(f"{where}: {_cause(exc)}") from None
        finally:
            deadline.disarm()
            _LOCAL.deadline = None
        self.health.count_request(path, str(response.status_code))
        return response

    def _read_capped(self, response: requests.Response, path: str, where: str) -> None:
        """Read the (decoded) body, refusing one larger than max_response_bytes."""
        declared = response.headers.get("Content-Length", "")
        chunks, size = [], 0
        if not (declared.isdigit() and int(declared) > self.max_response_bytes):
            for chunk in response.iter_content(1 << 16):
                size += len(chunk)
                if size > self.max_response_bytes:
                    break
                chunks.append(chunk)
        else:
            size = int(declared)
        if size > self.max_response_bytes:
            response.close()
            self.health.count_request(path, "error")
            raise ApiError(
                f"{where}: response larger than {self.max_response_bytes / 2**20:g} MiB; refused "
                "(raise max_response_bytes if the workspace really sends that much)"
            )
        response._content = b"".join(chunks)  # what response.json() and .text read
        response._content_consumed = True  # type: ignore[attr-defined]

    def _parse(self, path: str, response: requests.Response) -> dict[str, Any]:
        where = f"workspace {self.workspace}: GET {path} {response.status_code}"
        body: Any = None
        try:
            body = response.json()
        except (ValueError, json.JSONDecodeError):
            body = None
        if response.status_code >= 400:
            code = body.get("error_code") if isinstance(body, dict) else None
            message = body.get("message") if isinstance(body, dict) else None
            detail = redact(f"{code}: {message}") if code or message else _snippet(response)
            hint = _hint(response.status_code)
            raise ApiError(f"{where} {detail}{hint}", status=response.status_code, error_code=code)
        if not isinstance(body, dict):
            kind = response.headers.get("Content-Type", "no content type")
            raise ApiError(f"{where}: expected a JSON object, got {kind}: {_snippet(response)}")
        return body

    def paginate(
        self,
        path: str,
        params: dict[str, Any],
        key: str,
        dates: list[int | None] | None = None,
        max_pages: int | None = None,
        more: str | None = "has_more",
    ) -> Iterator[dict[str, Any]]:
        """Yield the items under ``key`` of every page, following ``next_page_token``.

        ``dates`` (optional) receives each page's ``Date`` (Databricks' clock, ms). Past
        ``max_pages`` (the client's by default) it raises PageLimit after the last item.
        ``more``: the field that says another page follows (the Jobs API's ``has_more``);
        None for APIs whose pages end when ``next_page_token`` is absent (Pipelines)."""
        seen_tokens: set[str] = set()
        query = dict(params)
        limit = self.max_pages if max_pages is None else min(max_pages, self.max_pages)
        for _ in range(limit):
            page, date_ms = self.get_dated(path, query)
            if dates is not None:
                dates.append(date_ms)
            items = page.get(key) or []
            if not isinstance(items, list):
                raise ApiError(f"workspace {self.workspace}: GET {path}: '{key}' is not a list")
            yield from (item for item in items if isinstance(item, dict))
            token = page.get("next_page_token")
            if (more is not None and not page.get(more)) or not token:
                return
            if token in seen_tokens:
                raise ApiError(
                    f"workspace {self.workspace}: GET {path}: page token repeated; "
                    "pagination stopped to avoid a loop"
                )
            seen_tokens.add(token)
            query["page_token"] = token
        raise PageLimit(
            f"workspace {self.workspace}: GET {path}: more than {limit} pages; stopped"
            + (
                " (raise max_pages if the workspace really is that large)"
                if limit == self.max_pages
                else ""
            )
        )

    def iter_runs(
        self,
        *,
        active_only: bool = False,
        completed_only: bool = False,
        start_time_from: int | None = None,
        start_time_to: int | None = None,
        expand_tasks: bool = False,
        dates: list[int | None] | None = None,
        max_pages: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Job runs matching the filters, page by page, each run once (pages may overlap).

        Lazy, so a caller can turn each page into small objects before the next arrives: the
        first collection of a large workspace never holds every raw run at once. ``dates``
        receives each page's ``Date`` (Databricks' clock).
        """
        params: dict[str, Any] = {"limit": RUNS_PAGE_LIMIT, "expand_tasks": expand_tasks}
        if active_only:
            params["active_only"] = True
        if completed_only:
            params["completed_only"] = True
        if start_time_from is not None:
            params["start_time_from"] = int(start_time_from)
        if start_time_to is not None:
            params["start_time_to"] = int(start_time_to)
        seen: set[int | str] = set()
        for run in self.paginate(RUNS_LIST, params, "runs", dates, max_pages):
            run_id = normalise_run_id(run.get("run_id"))
            if run_id is None:
                yield run  # the collector skips and counts it
            elif run_id not in seen:
                seen.add(run_id)
                yield run

    def list_job_ids(self) -> list[str]:
        """The ids of every job the identity can see (100 a page; one-time runs have none)."""
        ids = []
        for job in self.paginate(JOBS_LIST, {"limit": JOBS_PAGE_LIMIT}, "jobs"):
            job_id = normalise_run_id(job.get("job_id"))
            if job_id is not None:
                ids.append(str(job_id))
        return ids

    def get_run(self, run_id: int | str) -> dict[str, Any] | None:
        """One run with all its tasks and its repair history, or None when it no longer exists.

        Databricks answers 400 INVALID_PARAMETER_VALUE "Run N does not exist" for the runs of a
        deleted job (the Databricks SDK maps that message to NotFound too), 404 for a deleted
        run, and 403 once the job's permissions are gone with it: all mean "gone".
        """
        params: dict[str, Any] = {"run_id": run_id, "include_history": True}
        try:
            run = self.get(RUNS_GET, params)
        except ApiError as exc:
            if run_gone(exc):
                return None
            raise
        # An array that is not one is left as it came, for parse_run to refuse (wrong_type).
        arrays: dict[str, list[Any]] = {
            key: list(run[key]) if isinstance(run.get(key), list) else []
            for key in ("tasks", "job_clusters", "repair_history")
            if run.get(key) is None or isinstance(run.get(key), list)
        }
        token = run.get("next_page_token")
        seen_tokens: set[str] = set()
        # Arrays of over 100 items come 100 a page; later pages carry only those arrays.
        while token and token not in seen_tokens and len(seen_tokens) < self.max_pages:
            seen_tokens.add(token)
            page = self.get(RUNS_GET, {**params, "page_token": token})
            for key, items in arrays.items():
                more = page.get(key)
                if isinstance(more, list):
                    items.extend(more)
            token = page.get("next_page_token")
        for key, items in arrays.items():
            if items:
                run[key] = items
        run.pop("next_page_token", None)
        run["has_more"] = False
        return run

    def list_pools(self) -> list[dict[str, Any]]:
        """All instance pools (the API returns them in one response)."""
        return self.list_pools_dated()[0]

    def list_pools_dated(self) -> tuple[list[dict[str, Any]], int | None]:
        """``list_pools`` and the answer's ``Date`` in ms (None without a usable one)."""
        body, date_ms = self.get_dated(POOLS_LIST)
        pools = body.get("instance_pools") or []
        if not isinstance(pools, list):
            raise ApiError(
                f"workspace {self.workspace}: GET {POOLS_LIST}: 'instance_pools' is not a list"
            )
        return [p for p in pools if isinstance(p, dict)], date_ms


def _date_ms(value: str | None) -> int | None:
    """An HTTP ``Date`` header in ms since the epoch; None when absent or not a date."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None or when.year < 2000:
        return None
    return int(when.timestamp() * 1000)


def run_gone(exc: ApiError) -> bool:
    """Whether a runs/get error means the run no longer exists (or is no longer ours to see)."""
    if exc.status in (403, 404) or exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return (
        exc.status == 400
        and exc.error_code == "INVALID_PARAMETER_VALUE"
        and _DOES_NOT_EXIST.search(str(exc)) is not None
    )


def _wire(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Booleans as the API wants them: lowercase true/false."""
    if params is None:
        return None
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}


def _snippet(response: requests.Response, limit: int = 120) -> str:
    # Redact before cutting: a secret cut in half would no longer match the redactor.
    text = redact(" ".join((response.text or "").split()))
    return (text[:limit] + "...") if len(text) > limit else (text or "empty body")


def _cause(exc: BaseException) -> str:
    inner: BaseException = exc
    while inner.__context__ is not None and len(str(inner)) > 200:
        inner = inner.__context__
    reason = getattr(getattr(exc, "args", [None])[0], "reason", None)
    text = str(reason or inner)
    return text if len(text) <= 200 else text[:200] + "..."


def _hint(status: int) -> str:
    if status == 401:
        return " (check the credentials: token expired or revoked, or wrong tenant)"
    if status == 403:
        return " (the identity needs to be a workspace user with Can View on the jobs)"
    if status == 429:
        return " (rate limited; retries exhausted)"
    return ""
