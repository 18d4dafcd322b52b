"""DAG-level alerts: one summary per failed DAG run, and "DAG run late" for Airflow 3 deadlines.

    DAG(..., on_failure_callback=slack_dag_failure_callback)
    DeadlineAlert(reference=..., interval=..., callback=SyncCallback(slack_deadline_callback))

Airflow 3 runs DAG callbacks in the DAG processor, where the task SDK answers (task breadcrumbs,
XCom); under ``dag.test()`` and on Airflow 2 there is no supervisor to ask, and the metadata
database answers instead. Nothing here imports deadline classes, so it loads on Airflow 2 too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

from airflow_callbacks.context import _get, _http_url, _logical_date
from airflow_callbacks.delivery import DEFAULT_BUDGET_SECONDS, Slack, resolve_target
from airflow_callbacks.message import (
    MAX_BLOCKS,
    SECTION_LIMIT,
    escape,
    fields_section,
    header_block,
    truncate,
)

log = logging.getLogger("airflow_callbacks")

MAX_TASKS = 20  # failed tasks listed; the rest are counted


def _failed_from_sdk(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    rows = RuntimeTaskInstance.get_task_breadcrumbs(dag_id=dag_id, run_id=run_id)
    return [dict(r) for r in rows if str(r.get("state") or "").lower() == "failed"]


def _failed_from_task_states(dag_id: str, run_id: str, dag: Any) -> list[dict[str, Any]]:
    """What the DAG processor answers (GetTaskStates, no breadcrumbs): ``{task_id[_N]: state}``."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {})
    task_ids = set(_get(dag, "task_ids") or ())
    rows = []
    for name, state in sorted(states.items()):
        if str(state or "").lower() != "failed":
            continue
        task_id, map_index = name, -1
        head, _, tail = name.rpartition("_")
        if name not in task_ids and head in task_ids and tail.isdigit():
            task_id, map_index = head, int(tail)
        rows.append({"task_id": task_id, "map_index": map_index, "state": "failed"})
    return rows


def _failed_from_db(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(TI.task_id, TI.map_index, TI.state, TI.duration)
            .filter(TI.dag_id == dag_id, TI.run_id == run_id, TI.state == "failed")
            .order_by(TI.task_id, TI.map_index)
            .all()
        )
    return [
        {"task_id": r[0], "map_index": r[1], "state": str(r[2]), "duration": r[3]} for r in rows
    ]


def _xcom_from_sdk(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> Any:
    from airflow.sdk.bases.xcom import BaseXCom

    return BaseXCom.get_one(
        key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index
    )


def _xcom_from_db(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> Any:
    try:
        from airflow.models.xcom import XComModel  # Airflow 3
    except ImportError:
        from airflow.models.xcom import XCom  # Airflow 2

        return XCom.get_one(
            key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index
        )
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            key=key, dag_ids=dag_id, task_ids=task_id, run_id=run_id, map_indexes=map_index
        )
        row = session.scalars(query).first()
        return XComModel.deserialize_value(row) if row is not None else None


def _first_answer(*ways: Any) -> Any:
    """The first way that answers; the DAG processor's task SDK first, then the database."""
    for way in ways:
        try:
            return way()
        except Exception as exc:
            name = getattr(getattr(way, "func", way), "__name__", "lookup")
            log.debug("%s unavailable: %s", name, type(exc).__name__)
    return None


def failed_tasks(dag_id: str, run_id: str, dag: Any = None) -> list[dict[str, Any]]:
    """The DAG run's failed task instances with their Databricks run link, duration and owner.

    Asked in turn: the task SDK's breadcrumbs (with durations), its task states (what the DAG
    processor answers in Airflow 3), and the metadata database (dag.test(), Airflow 2)."""
    rows = _first_answer(
        partial(_failed_from_sdk, dag_id, run_id),
        partial(_failed_from_task_states, dag_id, run_id, dag),
        partial(_failed_from_db, dag_id, run_id),
    )
    tasks = []
    for row in rows or []:
        task_id, map_index = str(row.get("task_id") or ""), int(row.get("map_index", -1))
        url = ""
        for key in ("run_page_url", "databricks_job_run_link"):
            where = (dag_id, run_id, task_id, map_index, key)
            value = _first_answer(partial(_xcom_from_sdk, *where), partial(_xcom_from_db, *where))
            url = _http_url(value)
            if url:
                break
        tasks.append({**row, "task_id": task_id, "map_index": map_index, "url": url})
    return tasks


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds < 0:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def _link(url: str, label: str) -> str:
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{label}>"


def _fields(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return fields_section([(label, value) for label, value in pairs if value])


def dag_failure_message(
    dag_id: str, run_id: str, logical_date: str, reason: str, tasks: list[dict[str, Any]], dag: Any
) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        header_block(f":red_circle: DAG run failed: {dag_id}"),
        _fields(
            [
                ("DAG", dag_id),
                ("DAG run", run_id),
                ("Logical date", logical_date),
                ("Failed tasks", str(len(tasks))),
                ("Reason", reason),
            ]
        ),
    ]
    lines = []
    for t in tasks[:MAX_TASKS]:
        name = t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else "")
        parts = [f"*{escape(name)}*"]
        if duration := _duration(t.get("duration")):
            parts.append(duration)
        owner = _get(_task(dag, t["task_id"]), "owner")
        if owner:
            parts.append(f"owner {escape(str(owner))}")
        if t["url"]:
            parts.append(_link(t["url"], "Databricks run"))
        lines.append(" · ".join(parts))
    if len(tasks) > MAX_TASKS:
        lines.append(f"… and {len(tasks) - MAX_TASKS} more failed tasks")
    chunk = ""
    for line in lines:  # one section per ~3000 characters, within Slack's limits
        if chunk and len(chunk) + len(line) + 1 > SECTION_LIMIT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else truncate(line, SECTION_LIMIT)
    if chunk:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    names = ", ".join(t["task_id"] for t in tasks[:MAX_TASKS])
    text = f"DAG run failed: {dag_id} ({run_id}): {len(tasks)} failed tasks: {names}"
    return {"text": escape(truncate(text, 3000)), "blocks": blocks[:MAX_BLOCKS]}


def _task(dag: Any, task_id: str) -> Any:
    try:
        return dag.get_task(task_id)
    except Exception:
        return None


def slack_dag_failure_callback(
    context: Mapping[str, Any],
    *,
    slack_conn_id: str | None = None,
    channel: str | None = None,
) -> None:
    """DAG(on_failure_callback=...): one message per failed DAG run listing its failed tasks.

    Use ``functools.partial(slack_dag_failure_callback, slack_conn_id=..., channel=...)`` to pick
    the Slack connection. Never raises."""
    try:
        dag = context.get("dag")
        dag_run = context.get("dag_run")
        dag_id = str(_get(dag, "dag_id") or _get(dag_run, "dag_id") or "")
        run_id = str(context.get("run_id") or _get(dag_run, "run_id") or "")
        target = resolve_target(slack_conn_id, channel)
        if target is None or not dag_id or not run_id:
            log.warning("DAG failure alert not sent: no Slack target, DAG or run id")
            return
        tasks = failed_tasks(dag_id, run_id, dag)
        message = dag_failure_message(
            dag_id, run_id, _logical_date(context), str(context.get("reason") or ""), tasks, dag
        )
        Slack(target, DEFAULT_BUDGET_SECONDS).post(message)
    except Exception as exc:
        log.warning("DAG failure alert not sent: %s", type(exc).__name__)


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    return str(value or "")


def deadline_message(context: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    run = context.get("dag_run") or {}
    run = run if isinstance(run, Mapping) else {}
    deadline = context.get("deadline") or {}
    deadline = deadline if isinstance(deadline, Mapping) else {}
    dag_id, run_id = (
        str(run.get("dag_id") or ""),
        str(run.get("dag_run_id") or run.get("run_id") or ""),
    )
    expected = _iso(deadline.get("deadline_time"))
    blocks = [
        header_block(f":alarm_clock: DAG run late: {dag_id}"),
        _fields(
            [
                ("DAG", dag_id),
                ("DAG run", run_id),
                ("Expected by", expected),
                ("Now", _iso(now)),
                ("State", str(run.get("state") or "")),
                ("Logical date", _iso(run.get("logical_date"))),
                ("Queued at", _iso(run.get("queued_at"))),
                ("Started", _iso(run.get("start_date"))),
            ]
        ),
    ]
    text = f"DAG run late: {dag_id} ({run_id}) expected by {expected}, now {_iso(now)}"
    return {"text": escape(text), "blocks": blocks}


def slack_deadline_callback(
    context: Mapping[str, Any] | None = None,
    slack_conn_id: str | None = None,
    channel: str | None = None,
    **_: Any,
) -> None:
    """The callback of an Airflow 3 ``DeadlineAlert`` (``SyncCallback``): "DAG run late" with
    the expected and the current time. Never raises."""
    try:
        target = resolve_target(slack_conn_id, channel)
        if target is None:
            log.warning("Deadline alert not sent: no Slack target")
            return
        now = dt.datetime.now(dt.timezone.utc)
        Slack(target, DEFAULT_BUDGET_SECONDS).post(deadline_message(context or {}, now))
    except Exception as exc:
        log.warning("Deadline alert not sent: %s", type(exc).__name__)


async def slack_deadline_callback_async(
    context: Mapping[str, Any] | None = None,
    slack_conn_id: str | None = None,
    channel: str | None = None,
    **_: Any,
) -> None:
    """The same for ``AsyncCallback`` (runs in the triggerer; the post runs in a thread)."""
    await asyncio.to_thread(slack_deadline_callback, context, slack_conn_id, channel)
