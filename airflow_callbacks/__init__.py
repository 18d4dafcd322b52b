"""Airflow callbacks that post Slack alerts with the Databricks run page URL.

    from airflow_callbacks import slack_failure_callback, DatabricksSlackNotifier
    default_args = {"on_failure_callback": slack_failure_callback}
    on_failure_callback=DatabricksSlackNotifier(slack_conn_id="slack_alerts", channel="#oncall")

The plain functions import and run without Airflow; the Notifier is an Airflow BaseNotifier
(Airflow 2.6+ and 3.x). Nothing here ever raises into Airflow.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_callbacks.context import task_facts
from airflow_callbacks.delivery import DEFAULT_BUDGET_SECONDS, resolve_target, send
from airflow_callbacks.enrich import run_details
from airflow_callbacks.message import build

__all__ = [
    "DatabricksSlackNotifier",
    "notify",
    "slack_failure_callback",
    "slack_recovery_callback",
    "slack_retry_callback",
]

log = logging.getLogger("airflow_callbacks")


def notify(
    context: Mapping[str, Any],
    kind: str = "failure",
    *,
    slack_conn_id: str | None = None,
    channel: str | None = None,
    budget: float = DEFAULT_BUDGET_SECONDS,
) -> bool:
    """Build and send one alert for ``context``; True when Slack accepted it. Never raises."""
    try:
        target = resolve_target(slack_conn_id, channel)
        if target is None:
            log.warning(
                "Slack alert not sent: set AIRFLOW_CALLBACKS_SLACK_CONN_ID, SLACK_WEBHOOK_URL, "
                "or SLACK_BOT_TOKEN and SLACK_CHANNEL"
            )
            return False
        facts = task_facts(context)
        details = run_details(facts.databricks_run_id) if kind != "recovery" else []
        message = build(facts, kind, details)
        return send(target, message, budget=budget)
    except Exception as exc:  # a bug here must not fail the task's callback chain
        log.warning("Slack alert not sent: %s", type(exc).__name__)
        return False


def slack_failure_callback(context: Mapping[str, Any]) -> None:
    """on_failure_callback: the task failed for good (Airflow calls it once, after the last try)."""
    notify(context, "failure")


def slack_retry_callback(context: Mapping[str, Any]) -> None:
    """on_retry_callback: the task failed and will be retried."""
    notify(context, "retry")


def _recovered(context: Mapping[str, Any]) -> bool:
    ti = context.get("task_instance") or context.get("ti")
    try_number = getattr(ti, "try_number", None)
    if isinstance(try_number, int) and try_number > 1:
        return True
    try:
        previous = (
            ti.get_previous_ti() if ti is not None and hasattr(ti, "get_previous_ti") else None
        )
    except Exception:
        return False
    state = str(getattr(previous, "state", "") or "").lower()
    return state.endswith("failed")


def slack_recovery_callback(context: Mapping[str, Any]) -> None:
    """on_success_callback: a short 'recovered' message when the previous try or run failed."""
    if _recovered(context):
        notify(context, "recovery")


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
    ) -> None:
        super().__init__()
        self.slack_conn_id = slack_conn_id
        self.channel = channel
        self.kind = kind
        self.budget_seconds = budget_seconds

    def __call__(self, *args: Any) -> None:
        # Rendering templates writes into the instance; one object is shared by every task that
        # got it through default_args, so each call renders and sends from a fresh copy.
        try:
            super(DatabricksSlackNotifier, copy.copy(self)).__call__(*args)
        except Exception as exc:
            log.warning("Slack alert not sent: %s", type(exc).__name__)

    def notify(self, context: Mapping[str, Any]) -> None:
        if self.kind == "recovery" and not _recovered(context):
            return
        notify(
            context,
            self.kind,
            slack_conn_id=self.slack_conn_id,
            channel=self.channel,
            budget=self.budget_seconds,
        )
