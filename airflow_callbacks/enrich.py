"""Optional detail from Databricks itself: the run page URL, the state message, the failed tasks.

One runs/get, through the failed task's own Airflow connection (``databricks_conn_id``, read by
the Databricks provider's ``DatabricksHook``: PAT, AAD service principal, managed identity,
whatever the connection says) when the provider is installed; otherwise through the exporter's
client when DATABRICKS_HOST and credentials are in the environment. One try, a total deadline
(token requests included: an Entra ID that accepts and never answers costs ``TIMEOUT_SECONDS``,
no more), and silence on any error: an alert must never wait for, or fail because of, its
decoration.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_callbacks.deadline import Expired, call_within

log = logging.getLogger("airflow_callbacks")

TIMEOUT_SECONDS = 5  # for the whole lookup, and for each request in it
MAX_TASKS = 5


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
            run = _via_environment(run_id, env)
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


def _via_environment(run_id: str, env: Mapping[str, str]) -> dict[str, Any] | None:
    if not env.get("DATABRICKS_HOST") or not (
        env.get("DATABRICKS_TOKEN")
        or env.get("AZURE_CLIENT_ID")
        or env.get("AZURE_FEDERATED_TOKEN_FILE")
    ):
        return None
    try:
        from exporter.auth import DatabricksAuth
        from exporter.client import DatabricksClient
        from exporter.config import load_settings
        from exporter.health import WorkspaceHealth

        ws = load_settings([], env).workspaces[0]
        health = WorkspaceHealth()
        client = DatabricksClient(
            ws.name,
            ws.host,
            DatabricksAuth(ws, health),
            health,
            timeout=TIMEOUT_SECONDS,
            max_retries=0,
        )
        try:
            return client.get_run(run_id)
        finally:
            client.close()
    except Exception as exc:
        log.debug("Databricks run details unavailable: %s", type(exc).__name__)
        return None


def _details(run: dict[str, Any], secrets: list[str]) -> RunDetails:
    from exporter.outcomes import is_failure, result_state_of, state_message_of

    lines = []
    message = state_message_of(run)
    if message:
        lines.append(f"Databricks: {message}")
    # The exporter's one definition of failed (exporter/outcomes.py), status first.
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
