"""Optional detail from Databricks itself: the run's state message and its failed tasks.

Used only when DATABRICKS_HOST and credentials are configured; one runs/get through the
exporter's own client (AAD or PAT), a short timeout, no retries, and silence on any error:
an alert must never wait for, or fail because of, its decoration.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger("airflow_callbacks")

TIMEOUT_SECONDS = 5.0
MAX_TASKS = 5


def run_details(run_id: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Lines for the message: state message and failed tasks with links; [] when unavailable."""
    env = os.environ if env is None else env
    if not run_id.isdigit() or not env.get("DATABRICKS_HOST"):
        return []
    if not (
        env.get("DATABRICKS_TOKEN")
        or env.get("AZURE_CLIENT_ID")
        or env.get("AZURE_FEDERATED_TOKEN_FILE")
    ):
        return []
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
            run = client.get_run(run_id)
        finally:
            client.close()
    except Exception as exc:  # configuration, auth, network: all mean "no detail"
        log.debug("Databricks run details unavailable: %s", type(exc).__name__)
        return []
    if not run:
        return []
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
    return lines
