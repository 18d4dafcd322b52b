"""Optional detail from Databricks itself: the run page URL, the state message, the failed tasks
with their own errors, what a repair would re-run, and (for routing) the termination type and
the job's tags.

One runs/get, then one runs/get-output per failed task (its own run id: a multi-task run has no
output of its own; at most ``outputs``), and jobs/get only when a route needs the job's tags: all
read-only, through the failed task's own Airflow connection (``databricks_conn_id``, read by the
Databricks provider's ``DatabricksHook``: PAT, AAD service principal, managed identity, whatever
the connection says) when the provider is installed; otherwise with the standard library's HTTP
client when DATABRICKS_HOST and a token (DATABRICKS_TOKEN, or the AZURE_* settings with
azure-identity installed) are in the environment. One try each, one total deadline for all of
them (token requests included: an Entra ID that accepts and never answers costs
``TIMEOUT_SECONDS``, no more), what was answered before an error or the deadline is kept, and
silence on any error: an alert must never wait for, or fail because of, its decoration.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_callbacks.deadline import Expired, call_within
from airflow_callbacks.outcomes import _obj, is_failure, result_state_of, state_message_of
from airflow_callbacks.redact import Redactor
from airflow_callbacks.run_output import TaskError, excerpt

log = logging.getLogger("airflow_callbacks")

TIMEOUT_SECONDS = 5  # for the whole lookup, and for each request in it
MAX_TASKS = 5
MAX_PAGES = 5  # runs/get sends 100 tasks a page
MAX_RESPONSE_BYTES = 16 << 20
MAX_OUTPUTS = 2  # runs/get-output for the first failed task and one more (settings.error_tasks)
RUNS_GET = "/api/2.2/jobs/runs/get"
RUNS_GET_OUTPUT = "/api/2.2/jobs/runs/get-output"
JOBS_GET = "/api/2.2/jobs/get"
BLOCKED = frozenset({"UPSTREAM_FAILED", "UPSTREAM_CANCELED"})  # not run because of another task
DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"  # Azure Databricks' app id


@dataclass(frozen=True)
class FailedTask:
    task_key: str
    result_state: str
    run_page_url: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class RunDetails:
    run_page_url: str = ""
    lines: list[str] = field(default_factory=list)  # the run's state message
    secrets: list[str] = field(default_factory=list, repr=False)  # the connection's, to redact
    failed: list[FailedTask] = field(default_factory=list)  # the first MAX_TASKS
    more_failed: int = 0  # failed tasks beyond those
    errors: list[TaskError] = field(default_factory=list)  # runs/get-output of failed tasks
    rerun: list[str] = field(default_factory=list)  # what a repair of the run would re-run
    result_state: str = ""  # of the run (outcomes.py's labels)
    termination_type: str = ""  # status.termination_details.type: CLIENT_ERROR, CLOUD_FAILURE...
    job_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # the job's tags, when asked for


@dataclass
class _Found:
    """What the lookup has learnt so far: kept when the deadline stops it half way."""

    run: dict[str, Any] | None = None
    outputs: list[tuple[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


class _Api(Protocol):
    def run(self, run_id: str) -> Any: ...
    def output(self, run_id: str) -> Any: ...
    def job(self, job_id: str) -> Any: ...


def run_details(
    run_id: str,
    conn_id: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
    outputs: int = MAX_OUTPUTS,
    tags: bool = False,
) -> RunDetails:
    """What runs/get says about ``run_id``, and runs/get-output about its first ``outputs``
    failed tasks (each with the task's own run id), within ``timeout`` seconds in all; with
    ``tags``, the job's tags (jobs/get). Whatever was answered before the deadline or before an
    error is kept; nothing at all when there is nothing to ask with."""
    if not run_id.isdigit():
        return RunDetails()
    env = os.environ if env is None else env
    found = _Found()

    def lookup() -> None:
        api = _connection_api(conn_id, found.secrets) if conn_id else None
        run = _ask(api, "run", run_id, conn_id or "")
        if run is None:
            api = _environment_api(env, found.secrets)
            run = _ask(api, "run", run_id, "environment")
        if api is None or not isinstance(run, dict):
            return
        found.run = run
        for task_key, task_run in _output_targets(run)[: max(0, outputs)]:
            answer = _ask(api, "output", task_run, task_key)
            if answer is not None:
                found.outputs.append((task_key, answer))
        job_id = _id(run.get("job_id"))
        if tags and job_id:
            found.tags = _tags_of(_ask(api, "job", job_id, "jobs/get"))

    try:
        call_within(timeout, lookup, "databricks_run_details")
    except Expired:
        log.info(
            "Databricks run details skipped: no answer within %gs (earlier answers kept)", timeout
        )
    except Exception as exc:
        log.debug("Databricks run details unavailable: %s", type(exc).__name__)
    # A snapshot: the abandoned lookup may still be writing.
    run, answers, secrets = found.run, list(found.outputs), list(found.secrets)
    if not isinstance(run, dict):
        return RunDetails(secrets=secrets)
    return _details(run, answers, dict(found.tags), secrets, env)


def _ask(api: _Api | None, what: str, ident: str, name: str) -> Any:
    """One call of ``api``; None on any error (logged at DEBUG, by type only)."""
    if api is None:
        return None
    try:
        return getattr(api, what)(ident)
    except Exception as exc:  # connection missing, auth, 4xx/5xx, network: all mean "no detail"
        log.debug("Databricks %s unavailable (%s): %s", what, name, type(exc).__name__)
        return None


def _id(value: Any) -> str:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return text if text.isdigit() else ""


def latest_tasks(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's tasks, each task's last attempt only: a task with ``max_retries`` is listed
    once per attempt (``attempt_number``), and only its last says how it ended (the provider's
    own ``_latest_attempts`` does the same). Order kept; a task without a key is kept as is."""
    tasks = [t for t in run.get("tasks") or [] if isinstance(t, dict)]
    last: dict[str, int] = {}
    for i, task in enumerate(tasks):
        key = task.get("task_key")
        if not isinstance(key, str) or not key:
            continue
        attempt = task.get("attempt_number")
        attempt = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0
        before = last.get(key)
        if before is None:
            last[key] = i
            continue
        prior = tasks[before].get("attempt_number")
        prior = prior if isinstance(prior, int) and not isinstance(prior, bool) else 0
        if attempt >= prior:
            last[key] = i
    keep = set(last.values())
    return [
        t
        for i, t in enumerate(tasks)
        if i in keep or not isinstance(t.get("task_key"), str) or not t.get("task_key")
    ]


def repair_would_rerun(tasks: list[dict[str, Any]]) -> list[str]:
    """What Databricks' repair re-runs by default: the unsuccessful tasks (failed, or kept from
    running by one: UPSTREAM_FAILED, UPSTREAM_CANCELED) and every task that depends on one of
    them, directly or not (``depends_on``; e.g. a ``run_if: ALL_DONE`` task that ran anyway)."""
    keys = [str(t.get("task_key") or "?") for t in tasks]
    chosen = {
        key
        for key, t in zip(keys, tasks, strict=True)
        if is_failure(result := result_state_of(t)) or result in BLOCKED
    }
    depends = {
        key: {
            str(d.get("task_key"))
            for d in (t.get("depends_on") or [])
            if isinstance(d, dict) and d.get("task_key")
        }
        for key, t in zip(keys, tasks, strict=True)
    }
    grew = True
    while grew:
        grew = False
        for key, upstream in depends.items():
            if key not in chosen and upstream & chosen:
                chosen.add(key)
                grew = True
    return list(dict.fromkeys(k for k in keys if k in chosen))


def _output_targets(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(task key, run id) of the failed tasks (their last attempts), first failed first; the run
    itself when it has no tasks (a legacy single-task run)."""
    tasks = latest_tasks(run)
    if not tasks:
        run_id = _id(run.get("run_id"))
        return [("", run_id)] if run_id and is_failure(result_state_of(run)) else []
    failed = [t for t in tasks if is_failure(result_state_of(t)) and _id(t.get("run_id"))]
    failed.sort(key=lambda t: t["end_time"] if isinstance(t.get("end_time"), int) else 0)
    return [(str(t.get("task_key") or ""), _id(t.get("run_id"))) for t in failed]


def _tags_of(job: Any) -> dict[str, str]:
    settings = job.get("settings") if isinstance(job, dict) else None
    raw = settings.get("tags") if isinstance(settings, dict) else None
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if isinstance(v, str | int | float)}


class _HookApi:
    """The Databricks provider's hook for the task's connection: one try each, short timeout."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def run(self, run_id: str) -> Any:
        return self.hook.get_run(int(run_id))

    def output(self, run_id: str) -> Any:
        return self.hook.get_run_output(int(run_id))

    def job(self, job_id: str) -> Any:
        from airflow.providers.databricks.hooks import databricks

        method, path = databricks.GET_RUN_ENDPOINT  # ("GET", "2.2/jobs/runs/get") or older
        return self.hook._do_api_call((method, path.replace("runs/get", "get")), {"job_id": job_id})


def _connection_api(conn_id: str, secrets: list[str]) -> _Api | None:
    try:
        from airflow.providers.databricks.hooks.databricks import DatabricksHook
    except ImportError:
        return None
    try:
        hook = DatabricksHook(
            databricks_conn_id=conn_id,
            timeout_seconds=TIMEOUT_SECONDS,
            retry_limit=1,
            retry_delay=1,
            caller="airflow_callbacks",
        )
        conn = hook.databricks_conn
        secrets.extend([str(conn.password or ""), str(conn.extra_dejson.get("token") or "")])
        return _HookApi(hook)
    except Exception as exc:  # connection missing or unreadable
        log.debug("Databricks connection unavailable (%s): %s", conn_id, type(exc).__name__)
        return None


class _HttpApi:
    """runs/get, runs/get-output and jobs/get with the standard library's HTTP client."""

    def __init__(self, host: str, token: str, env: Mapping[str, str]) -> None:
        self.host, self.token, self.env = host, token, env

    def run(self, run_id: str) -> Any:
        return _runs_get(self.host, self.token, run_id, self.env)

    def output(self, run_id: str) -> Any:
        return _get(self.host, self.token, RUNS_GET_OUTPUT, {"run_id": run_id}, self.env)

    def job(self, job_id: str) -> Any:
        return _get(self.host, self.token, JOBS_GET, {"job_id": job_id}, self.env)


def _environment_api(env: Mapping[str, str], secrets: list[str]) -> _Api | None:
    """DATABRICKS_HOST and a token (DATABRICKS_TOKEN, else an Entra ID token from azure-identity
    when it is installed)."""
    host = env.get("DATABRICKS_HOST", "").strip().rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = "https://" + host
    try:
        token = env.get("DATABRICKS_TOKEN", "").strip() or _entra_id_token(env)
    except Exception as exc:
        log.debug("Databricks token unavailable: %s", type(exc).__name__)
        return None
    if not token:
        return None
    secrets.append(token)
    return _HttpApi(host, token, env)


def _entra_id_token(env: Mapping[str, str]) -> str:
    """A token for Azure Databricks from the AZURE_* settings, or "" without any or without
    azure-identity (which the Databricks provider installs)."""
    client_id, tenant_id = env.get("AZURE_CLIENT_ID", ""), env.get("AZURE_TENANT_ID", "")
    secret = env.get("AZURE_CLIENT_SECRET", "")
    if not (client_id or env.get("AZURE_FEDERATED_TOKEN_FILE")):
        return ""
    try:
        from azure.identity import ClientSecretCredential, DefaultAzureCredential
    except ImportError:
        log.debug("Databricks run details need azure-identity for the AZURE_* settings")
        return ""
    common: dict[str, Any] = {}
    if env.get("AZURE_AUTHORITY_HOST"):
        common["authority"] = env["AZURE_AUTHORITY_HOST"]
    credential: Any
    if client_id and tenant_id and secret:
        credential = ClientSecretCredential(
            tenant_id,
            client_id,
            secret,
            disable_instance_discovery=env.get("AZURE_DISABLE_INSTANCE_DISCOVERY", "").lower()
            in ("1", "true", "yes"),
            **common,
        )
    else:
        if client_id:
            common["managed_identity_client_id"] = client_id
            common["workload_identity_client_id"] = client_id
        if tenant_id:
            common["workload_identity_tenant_id"] = tenant_id
        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True, **common)
    return str(credential.get_token(DATABRICKS_SCOPE).token)


def _get(host: str, token: str, path: str, query: Mapping[str, str], env: Mapping[str, str]) -> Any:
    """One GET of the Jobs API; its JSON answer (an HTTP error raises)."""
    cafile = env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE") or None
    tls = ssl.create_default_context(cafile=cafile)
    request = urllib.request.Request(
        f"{host}{path}?{urllib.parse.urlencode(query)}",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": "airflow-provider-databricks-slack-callbacks",
        },
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=tls) as response:
        return json.loads(response.read(MAX_RESPONSE_BYTES))


def _runs_get(host: str, token: str, run_id: str, env: Mapping[str, str]) -> Any:
    """One run with its tasks (later pages of over 100 tasks too, up to MAX_PAGES)."""
    run: Any = None
    page_token = ""
    for _ in range(MAX_PAGES):
        query = {"run_id": run_id, **({"page_token": page_token} if page_token else {})}
        page = _get(host, token, RUNS_GET, query, env)
        if not isinstance(page, dict):
            return None
        if run is None:
            run = page
        elif isinstance(page.get("tasks"), list) and isinstance(run.get("tasks"), list):
            run["tasks"].extend(page["tasks"])
        page_token = str(page.get("next_page_token") or "")
        if not page_token:
            break
    return run


def _details(
    run: dict[str, Any],
    answers: list[tuple[str, Any]],
    tags: dict[str, str],
    secrets: list[str],
    env: Mapping[str, str],
) -> RunDetails:
    lines = []
    message = state_message_of(run)
    if message:
        lines.append(f"Databricks: {message}")
    tasks = latest_tasks(run)
    # The exporter's definition of failed (airflow_callbacks/outcomes.py), status first.
    failed = [
        FailedTask(
            str(t.get("task_key") or "?"),
            result,
            str(t.get("run_page_url") or ""),
            _id(t.get("run_id")),
        )
        for t in tasks
        if is_failure(result := result_state_of(t))
    ]
    rerun = repair_would_rerun(tasks)
    redact = Redactor(secrets, env)
    errors = [e for key, answer in answers if (e := excerpt(answer, key, redact))]
    page = run.get("run_page_url")
    return RunDetails(
        page if isinstance(page, str) else "",
        lines,
        secrets,
        failed[:MAX_TASKS],
        max(0, len(failed) - MAX_TASKS),
        errors,
        rerun,
        result_state_of(run),
        _termination_type(run, tasks),
        _id(run.get("job_id")),
        tags,
    )


def _termination_type(run: Mapping[str, Any], tasks: list[dict[str, Any]]) -> str:
    """status.termination_details.type of the run, else of its first failed task."""
    for raw in [run, *(t for t in tasks if is_failure(result_state_of(t)))]:
        kind = _obj(_obj(raw, "status"), "termination_details").get("type")
        if isinstance(kind, str) and kind.strip():
            return kind.strip().upper()
    return ""
