"""Airflow callbacks that post Slack alerts with the Databricks run page URL.

The distribution airflow-provider-databricks-slack-callbacks; it requires slack-sdk only.

    from airflow_callbacks import slack_failure_callback, DatabricksSlackNotifier
    default_args = {"on_failure_callback": slack_failure_callback}
    on_failure_callback=DatabricksSlackNotifier(slack_conn_id="slack_alerts", channel="#oncall")

The plain functions import and run without Airflow; the Notifier is an Airflow BaseNotifier
(Airflow 2.10+ and 3.x, both tested). With the Databricks and Slack providers installed they use
the task's own connections through the providers' hooks. With the Web API, one Slack thread per
incident (airflow_callbacks.incidents). Nothing here ever raises into Airflow.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from airflow_callbacks import incidents
from airflow_callbacks.context import TaskFacts, task_facts
from airflow_callbacks.dag_alerts import slack_dag_failure_callback, slack_deadline_callback
from airflow_callbacks.deadline import Deadline
from airflow_callbacks.delivery import DEFAULT_BUDGET_SECONDS, Slack, resolve_target
from airflow_callbacks.enrich import TIMEOUT_SECONDS, RunDetails, run_details
from airflow_callbacks.message import build, error_line, reply
from airflow_callbacks.routing import Event, route
from airflow_callbacks.settings import Settings
from airflow_callbacks.settings import load as load_settings

__version__ = "0.1.0"

__all__ = [
    "DatabricksSlackNotifier",
    "notify",
    "slack_dag_failure_callback",
    "slack_deadline_callback",
    "slack_failure_callback",
    "slack_recovery_callback",
    "slack_retry_callback",
]

log = logging.getLogger("airflow_callbacks")

STORED_ERROR = 300  # characters of the last error kept in the incident record


def _previous_run_failed(context: Mapping[str, Any], facts: TaskFacts) -> str | None:
    """The DAG run id of this task's previous run (same map index) if that one failed."""
    ti = context.get("task_instance") or context.get("ti")
    if ti is None:
        return None
    try:
        try:
            previous = ti.get_previous_ti(map_index=facts.map_index)  # Airflow 3
        except TypeError:  # Airflow 2's get_previous_ti() would answer for map index -1
            dag_run = ti.get_previous_dagrun()
            previous = (
                dag_run.get_task_instance(facts.task_id, map_index=facts.map_index)
                if dag_run is not None
                else None
            )
    except Exception as exc:
        log.debug("Previous task instance unavailable: %s", type(exc).__name__)
        return None
    state = str(getattr(previous, "state", "") or "").lower()
    return str(getattr(previous, "run_id", "") or "") if state.endswith("failed") else None


def error_digest(line: str) -> str:
    """What makes two errors "the same" in a thread: the text with its numbers (run ids, times,
    line numbers) blanked."""
    normal = re.sub(r"\d+", "#", " ".join(line.split()))
    return hashlib.sha256(normal.encode()).hexdigest()[:16] if normal else ""


def _stored(line: str) -> str:
    """An error line as the incident record keeps it (a Variable: short, already redacted)."""
    return line if len(line) <= STORED_ERROR else line[: STORED_ERROR - 1] + "…"


def _links(settings: Settings, facts: TaskFacts, details: RunDetails) -> list[tuple[str, str]]:
    """The Dashboard and Runbook buttons of the settings; ``{dag_id}``, ``{task_id}``,
    ``{job_id}`` in their URLs are filled in (URL-quoted)."""
    values = {"dag_id": facts.dag_id, "task_id": facts.task_id, "job_id": details.job_id}
    links = []
    for label, url in (("Dashboard", settings.dashboard_url), ("Runbook", settings.runbook_url)):
        if not url:
            continue
        try:
            links.append((label, url.format_map({k: quote(v, safe="") for k, v in values.items()})))
        except (KeyError, ValueError, IndexError):
            links.append((label, url))  # braces of its own: the URL as written
    return links


def notify(
    context: Mapping[str, Any],
    kind: str = "failure",
    *,
    slack_conn_id: str | None = None,
    channel: str | None = None,
    budget: float = DEFAULT_BUDGET_SECONDS,
    store: incidents.Store | None = None,
    settings: Mapping[str, Any] | Settings | None = None,
) -> bool:
    """Send one alert for ``context``; True when Slack accepted it. Never raises.

    ``kind`` is "retry", "failure" or "recovery". With the Web API (a bot token or a ``slack``
    connection) the first failed try of a task instance posts the incident's message (its facts:
    the error, the failed Databricks task's own error and trace, what a repair would re-run);
    later tries and the recovery reply in its thread with what changed only, and rewrite the
    message to its current state. "recovery" posts only for an open incident (or when the
    task's previous DAG run failed). ``settings`` (airflow_callbacks.settings) on top of the
    Variable's: routes, mentions, mute, last-retry-only, links. ``budget`` bounds the Databricks
    details (at most 5 s and half the budget) and the delivery together.
    """
    deadline = Deadline(budget)
    try:
        config = settings if isinstance(settings, Settings) else load_settings(settings)
        facts = task_facts(context)
        store = store if store is not None else incidents.default_store()
        key = incidents.key_of(facts.dag_id, facts.run_id, facts.task_id, facts.map_index)
        incident = store.load(key)
        if kind == "recovery" and incident is None:
            previous_run = _previous_run_failed(context, facts)
            if previous_run is None:
                return False  # nothing failed: a first success, or a cleared success
            key = incidents.key_of(facts.dag_id, previous_run, facts.task_id, facts.map_index)
            incident = store.load(key)
        target = resolve_target(slack_conn_id, channel)
        if target is None:
            log.warning(
                "Slack alert not sent: set AIRFLOW_CALLBACKS_SLACK_CONN_ID, SLACK_WEBHOOK_URL, "
                "or SLACK_BOT_TOKEN and SLACK_CHANNEL"
            )
            return False
        if (early := route(config, Event(kind, facts.owner))).muted:
            log.info("Slack alert not sent (%s)", early.muted)  # before asking Databricks
            return False
        details = RunDetails()
        if kind != "recovery" and facts.databricks_run_id:
            details = run_details(
                facts.databricks_run_id,
                facts.databricks_conn_id or None,
                timeout=min(TIMEOUT_SECONDS, budget / 2),
                outputs=config.error_tasks,
                tags=config.wants_tags,
            )
        if not facts.databricks_url and details.run_page_url:
            facts = replace(facts, databricks_url=details.run_page_url)
        event = Event(
            kind, facts.owner, details.result_state, details.termination_type, details.tags
        )
        where = route(config, event)
        if where.muted:
            log.info("Slack alert not sent (%s)", where.muted)
            return False
        slack = Slack(target, deadline.left(), secrets=details.secrets)
        links = _links(config, facts, details)
        line = error_line(facts, details) if kind != "recovery" else ""
        digest = error_digest(slack.redact(line))
        if incident is not None and incident.ts and incident.channel and slack.threads:
            new_error = line if digest and digest != incident.error else ""
            posted = slack.post(
                # The final failure mentions again; a retry or the recovery does not ping.
                reply(facts, kind, new_error, slack.redact, where.mention * (kind == "failure")),
                thread_ts=incident.ts,
                channel=incident.channel,
            )
            if posted.ok:
                incident.updates += 1
                if digest:
                    incident.error, incident.last_error = digest, _stored(slack.redact(line))
                note = f"{incident.updates} update{'s' * (incident.updates > 1)} in the thread"
                notes = [note]
                if kind == "recovery" and incident.last_error:
                    notes.insert(0, f"Failed before with: {incident.last_error}")
                # An edit notifies nobody: the mention stays for who reads the channel.
                current = build(
                    facts,
                    kind,
                    notes,
                    slack.redact,
                    run=details,
                    mention=where.mention,
                    links=links,
                )
                slack.update(incident.channel, incident.ts, current)
        else:
            parent = build(
                facts, kind, None, slack.redact, run=details, mention=where.mention, links=links
            )
            metadata = incidents.metadata(facts, kind) if slack.threads else None
            posted = slack.post(parent, metadata=metadata, channel=where.channel)
            if posted.ok and incident is None:
                incident = incidents.Incident(
                    facts.dag_id,
                    facts.task_id,
                    facts.map_index,
                    facts.run_id,
                    kind,
                    channel=posted.channel,
                    ts=posted.ts,
                    opened=time.time(),
                    error=digest,
                    last_error=_stored(slack.redact(line)),
                )
        if not posted.ok:
            return False
        if kind == "recovery":
            store.close(key)
        elif incident is not None:
            incident.state = kind
            store.save(key, incident)
        return True
    except Exception as exc:  # a bug here must not fail the task's callback chain
        log.warning("Slack alert not sent: %s", type(exc).__name__)
        return False


# functools.partial(slack_failure_callback, settings={...}) gives a callback its own settings.


def slack_failure_callback(
    context: Mapping[str, Any],
    *,
    slack_conn_id: str | None = None,
    channel: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> None:
    """on_failure_callback: the task failed for good (Airflow calls it once, after the last try)."""
    notify(context, "failure", slack_conn_id=slack_conn_id, channel=channel, settings=settings)


def slack_retry_callback(
    context: Mapping[str, Any],
    *,
    slack_conn_id: str | None = None,
    channel: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> None:
    """on_retry_callback: the task failed and will be retried."""
    notify(context, "retry", slack_conn_id=slack_conn_id, channel=channel, settings=settings)


def slack_recovery_callback(
    context: Mapping[str, Any],
    *,
    slack_conn_id: str | None = None,
    channel: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> None:
    """on_success_callback: "Recovered" after a failed try of this task instance (or a failed
    previous DAG run of the task); silent after a plain or cleared success."""
    notify(context, "recovery", slack_conn_id=slack_conn_id, channel=channel, settings=settings)


def _base_notifier() -> type:
    try:
        from airflow.sdk import BaseNotifier  # Airflow 3

        return BaseNotifier  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        from airflow.notifications.basenotifier import BaseNotifier as Airflow2Notifier

        return Airflow2Notifier  # type: ignore[no-any-return]
    except ImportError:

        class _Plain:  # without Airflow: still callable with a context
            template_fields: Sequence[str] = ()

            def __call__(self, context: Mapping[str, Any]) -> None:
                self.notify(context)  # type: ignore[attr-defined]

        return _Plain


class DatabricksSlackNotifier(_base_notifier()):  # type: ignore[misc]
    """A templated Notifier for on_failure / on_retry / on_success callbacks.

    ``kind`` is "failure", "retry" or "recovery" (recovery posts only after a failed try or run).
    """

    template_fields: Sequence[str] = ("channel", "slack_conn_id")

    def __init__(
        self,
        slack_conn_id: str | None = None,
        channel: str | None = None,
        kind: str = "failure",
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.slack_conn_id = slack_conn_id
        self.channel = channel
        self.kind = kind
        self.budget_seconds = budget_seconds
        self.settings = dict(settings or {})

    def __call__(self, *args: Any) -> None:
        # Rendering templates writes into the instance; one object is shared by every task that
        # got it through default_args, so each call renders and sends from a fresh copy.
        try:
            super(DatabricksSlackNotifier, copy.copy(self)).__call__(*args)
        except Exception as exc:
            log.warning("Slack alert not sent: %s", type(exc).__name__)

    def notify(self, context: Mapping[str, Any]) -> None:
        notify(
            context,
            self.kind,
            slack_conn_id=self.slack_conn_id,
            channel=self.channel,
            budget=self.budget_seconds,
            settings=self.settings,
        )
