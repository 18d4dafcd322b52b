"""What a callback needs from the Airflow context, read defensively (Airflow 2.10+ and 3.x)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskFacts:
    dag_id: str
    task_id: str
    map_index: int
    try_number: int | None
    max_tries: int | None
    logical_date: str
    run_id: str
    owner: str
    log_url: str
    exception_type: str
    exception_message: str
    databricks_url: str
    databricks_run_id: str
    databricks_conn_id: str = ""


def _get(obj: Any, name: str, default: Any = None) -> Any:
    try:
        value = getattr(obj, name, default)
    except Exception:  # a lazy attribute that needs a database, say
        return default
    return default if value is None else value


def text(value: Any, failed: str = "(str() failed)") -> str:
    """``str(value)``, or ``failed`` when the object's ``__str__`` raises (a task's own exception
    class, or anything else a context holds, can do that)."""
    try:
        return str(value)
    except Exception:
        return failed


def _pull(ti: Any, key: str) -> Any:
    """The failed task's own XCom ``key`` (its map index if mapped); None on any error."""
    if ti is None or not hasattr(ti, "xcom_pull"):
        return None
    kwargs: dict[str, Any] = {"task_ids": _get(ti, "task_id"), "key": key}
    map_index = _get(ti, "map_index", -1)
    if isinstance(map_index, int) and map_index >= 0:
        kwargs["map_indexes"] = map_index
    try:
        value = ti.xcom_pull(**kwargs)
    except Exception as exc:
        log.debug("xcom_pull(%s) failed: %s", key, exc)
        return None
    if isinstance(value, list) and len(value) == 1:  # some versions wrap single pulls
        value = value[0]
    return value


def _http_url(value: Any) -> str:
    url = text(value or "", "").strip()
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


def _id(value: Any) -> str:
    return text(value, "").strip() if isinstance(value, int | str) else ""


def run_page_url(host: str, job_id: str, run_id: str) -> str:
    """The link Databricks gives a run: ``{host}/?o={workspace_id}#job/{job_id}/run/{run_id}``.

    The workspace id is the number in an Azure host (``adb-<id>.<n>.azuredatabricks.net``);
    elsewhere the host alone selects the workspace. Without the job id there is no such link.
    """
    host = host.strip().rstrip("/")
    if not (job_id.isdigit() and run_id.isdigit() and _http_url(host)):
        return ""
    match = re.match(r"adb-(\d+)\.", urlsplit(host).hostname or "")
    workspace = f"/?o={match.group(1)}" if match else "/"
    return f"{host}{workspace}#job/{job_id}/run/{run_id}"


def databricks_url(ti: Any, host: str | None = None) -> tuple[str, str]:
    """(run page URL, run id): XCom run_page_url, else databricks_job_run_link, else one built
    from XCom job_id and run_id and DATABRICKS_HOST (runs/get's run_page_url, asked later through
    the task's connection, fills in what is still missing)."""
    run_id = _id(_pull(ti, "run_id"))
    for key in ("run_page_url", "databricks_job_run_link"):
        url = _http_url(_pull(ti, key))
        if url:
            return url, run_id
    if not run_id.isdigit():
        return "", run_id
    host = host if host is not None else os.environ.get("DATABRICKS_HOST", "")
    return run_page_url(host, _id(_pull(ti, "job_id")), run_id), run_id


def _logical_date(context: Mapping[str, Any]) -> str:
    value = context.get("logical_date")
    if value is None:
        value = _get(context.get("dag_run"), "logical_date")
    if value is None:
        return ""
    iso = getattr(value, "isoformat", None)
    try:
        return text(iso()) if callable(iso) else text(value)
    except Exception:
        return ""


def task_facts(context: Mapping[str, Any], host: str | None = None) -> TaskFacts:
    """Everything the message shows; missing pieces become empty strings, never errors."""
    ti = context.get("task_instance") or context.get("ti")
    task = context.get("task") or _get(ti, "task")
    dag = context.get("dag") or _get(task, "dag")
    exc = context.get("exception")
    url, run_id = databricks_url(ti, host)
    max_tries = _get(ti, "max_tries")
    if max_tries is None:
        retries = _get(task, "retries")
        max_tries = retries if isinstance(retries, int) else None
    map_index = _get(ti, "map_index", -1)
    dag_run = context.get("dag_run")
    return TaskFacts(
        dag_id=text(_get(ti, "dag_id") or _get(dag, "dag_id") or ""),
        task_id=text(_get(ti, "task_id") or _get(task, "task_id") or ""),
        map_index=map_index if isinstance(map_index, int) else -1,
        try_number=_get(ti, "try_number") if isinstance(_get(ti, "try_number"), int) else None,
        max_tries=max_tries if isinstance(max_tries, int) else None,
        logical_date=_logical_date(context),
        run_id=text(context.get("run_id") or _get(dag_run, "run_id") or _get(ti, "run_id") or ""),
        owner=text(_get(task, "owner") or ""),
        log_url=_http_url(_get(ti, "log_url")),
        exception_type=type(exc).__name__ if isinstance(exc, BaseException) else "",
        exception_message=text(exc) if exc is not None else "",
        databricks_url=url,
        databricks_run_id=run_id,
        databricks_conn_id=text(_get(task, "databricks_conn_id") or "", ""),
    )


def airflow_major() -> int:
    try:
        from airflow import __version__
    except ImportError:
        return 0
    head = str(__version__).split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def base_url_setting() -> str:
    """Where airflow.cfg sets the host of log links: [webserver] on Airflow 2, [api] on 3."""
    return "[webserver] base_url" if airflow_major() == 2 else "[api] base_url"
