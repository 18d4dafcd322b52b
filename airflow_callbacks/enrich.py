"""Optional detail from Databricks itself: the run page URL, the state message, the failed tasks.

One runs/get, through the failed task's own Airflow connection (``databricks_conn_id``, read by
the Databricks provider's ``DatabricksHook``: PAT, AAD service principal, managed identity,
whatever the connection says) when the provider is installed; otherwise with the standard
library's HTTP client when DATABRICKS_HOST and a token (DATABRICKS_TOKEN, or the AZURE_* settings
with azure-identity installed) are in the environment. One try, a total deadline
(token requests included: an Entra ID that accepts and never answers costs ``TIMEOUT_SECONDS``,
no more), and silence on any error: an alert must never wait for, or fail because of, its
decoration.
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
from typing import Any

from airflow_callbacks.deadline import Expired, call_within
from airflow_callbacks.outcomes import is_failure, result_state_of, state_message_of

log = logging.getLogger("airflow_callbacks")

TIMEOUT_SECONDS = 5  # for the whole lookup, and for each request in it
MAX_TASKS = 5
MAX_PAGES = 5  # runs/get sends 100 tasks a page
MAX_RESPONSE_BYTES = 16 << 20
RUNS_GET = "/api/2.2/jobs/runs/get"
DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"  # Azure Databricks' app id


@dataclass(frozen=True)
class RunDetails:
    run_page_url: str = ""
    lines: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list, repr=False)  # the connection's, to redact


def run_details(
    run_id: str,
    conn_id: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> RunDetails:
    """What runs/get says about ``run_id`` within ``timeout`` seconds in all; empty when there is
    nothing to ask with or no answer in time (with the connection's secrets, if it was read)."""
    if not run_id.isdigit():
        return RunDetails()
    env = os.environ if env is None else env
    secrets: list[str] = []

    def lookup() -> RunDetails:
        run = _via_connection(run_id, conn_id, secrets) if conn_id else None
        if run is None:
            run = _via_environment(run_id, env, secrets)
        return _details(run, secrets) if isinstance(run, dict) else RunDetails(secrets=secrets)

    try:
        return call_within(timeout, lookup, "databricks_run_details")
    except Expired:
        log.info("Databricks run details skipped: no answer within %gs", timeout)
    except Exception as exc:
        log.debug("Databricks run details unavailable: %s", type(exc).__name__)
    return RunDetails(secrets=list(secrets))


def _via_connection(run_id: str, conn_id: str, secrets: list[str]) -> dict[str, Any] | None:
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
        run: dict[str, Any] = hook.get_run(int(run_id))
        return run
    except Exception as exc:  # connection missing, auth, network: all mean "no detail"
        log.debug("Databricks run details unavailable (%s): %s", conn_id, type(exc).__name__)
        return None


def _via_environment(run_id: str, env: Mapping[str, str], secrets: list[str]) -> Any:
    """runs/get with DATABRICKS_HOST and a token (DATABRICKS_TOKEN, else an Entra ID token from
    azure-identity when it is installed), with the standard library's HTTP client."""
    host = env.get("DATABRICKS_HOST", "").strip().rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = "https://" + host
    try:
        token = env.get("DATABRICKS_TOKEN", "").strip() or _entra_id_token(env)
        if not token:
            return None
        secrets.append(token)
        return _runs_get(host, token, run_id, env)
    except Exception as exc:
        log.debug("Databricks run details unavailable: %s", type(exc).__name__)
        return None


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


def _runs_get(host: str, token: str, run_id: str, env: Mapping[str, str]) -> Any:
    """One run with its tasks (later pages of over 100 tasks too, up to MAX_PAGES)."""
    cafile = env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE") or None
    tls = ssl.create_default_context(cafile=cafile)
    run: Any = None
    page_token = ""
    for _ in range(MAX_PAGES):
        query = {"run_id": run_id, **({"page_token": page_token} if page_token else {})}
        request = urllib.request.Request(
            f"{host}{RUNS_GET}?{urllib.parse.urlencode(query)}",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "airflow-provider-databricks-slack-callbacks",
            },
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=tls) as response:
            page = json.loads(response.read(MAX_RESPONSE_BYTES))
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


def _details(run: dict[str, Any], secrets: list[str]) -> RunDetails:
    lines = []
    message = state_message_of(run)
    if message:
        lines.append(f"Databricks: {message}")
    # The exporter's definition of failed (airflow_callbacks/outcomes.py), status first.
    failed = [
        (t, result)
        for t in run.get("tasks") or []
        if isinstance(t, dict) and is_failure(result := result_state_of(t))
    ]
    for task, result in failed[:MAX_TASKS]:
        url = str(task.get("run_page_url") or "")
        lines.append(f"Failed task {task.get('task_key', '?')} ({result}) {url}".strip())
    if len(failed) > MAX_TASKS:
        lines.append(f"... and {len(failed) - MAX_TASKS} more failed tasks")
    page = run.get("run_page_url")
    return RunDetails(page if isinstance(page, str) else "", lines, secrets)
