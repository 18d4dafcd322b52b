"""The callbacks' optional settings: routing, mentions, muting, links. Defaults are today's
behaviour: one channel (the Slack target's), no mention, every event posted, no extra links.

Read from the Airflow Variable ``airflow_callbacks_settings`` (JSON; like any Variable it can
also come from the environment, ``AIRFLOW_VAR_AIRFLOW_CALLBACKS_SETTINGS``, or a secrets
backend), with keyword arguments of a callback (``functools.partial`` or
``DatabricksSlackNotifier(settings=...)``) replacing its top-level keys::

    {
      "routes": [
        {"termination_type": ["CLOUD_FAILURE", "INTERNAL_ERROR"],
         "channel": "#data-platform", "mention": "<!subteam^S0PLATFORM>"},
        {"termination_type": "CLIENT_ERROR", "mention": "owner"},
        {"job_tag": {"team": "finance"}, "channel": "#finance-data"},
        {"owner": "ml-team", "channel": "#ml-oncall"}
      ],
      "mentions": {"data-platform": "<!subteam^S0DATAPLAT>"},
      "mute": ["skipped", "canceled"],
      "alert_on_last_retry_only": false,
      "dashboard_url": "https://grafana.example.com/d/databricks-jobs/databricks-jobs",
      "runbook_url": "https://wiki.example.com/runbooks/databricks-jobs",
      "error_tasks": 2
    }

A value that is not what it should be is dropped with one WARNING naming the key (never its
value); a Variable that is not JSON means the defaults.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("airflow_callbacks")

VARIABLE = "airflow_callbacks_settings"
MUTABLE = frozenset({"skipped", "canceled"})  # outcomes (outcomes.py) that "mute" accepts
# What Slack turns into a notification: a user group, a user, @here / @channel.
MENTION = re.compile(r"^<(?:!subteam\^[A-Z0-9]+|@[UW][A-Z0-9]+|!here|!channel)(?:\|[^<>|]*)?>$")
OWNER = "owner"  # a rule's "mention": the owner's mention from "mentions"
DEFAULT_ERROR_TASKS = 2  # the first failed task and one more
MAX_ERROR_TASKS = 5


@dataclass(frozen=True)
class Rule:
    """A route: the conditions given must all hold; the first rule that matches decides."""

    channel: str = ""
    mention: str = ""  # a Slack mention, or "owner"
    termination_types: frozenset[str] = frozenset()
    owners: frozenset[str] = frozenset()
    job_tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Settings:
    routes: tuple[Rule, ...] = ()
    mentions: dict[str, str] = field(default_factory=dict)  # owner name -> Slack mention
    mute: frozenset[str] = frozenset()
    last_retry_only: bool = False
    dashboard_url: str = ""
    runbook_url: str = ""
    error_tasks: int = DEFAULT_ERROR_TASKS  # failed tasks whose runs/get-output is asked

    @property
    def wants_tags(self) -> bool:
        """Whether a rule needs the Databricks job's tags (one jobs/get more)."""
        return any(rule.job_tags for rule in self.routes)


def _names(value: Any) -> frozenset[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return frozenset(v.strip() for v in value if v.strip())


def _mention(value: Any, where: str) -> str:
    if value in ("", None):
        return ""
    if value == OWNER or (isinstance(value, str) and MENTION.match(value)):
        return str(value)
    log.warning("Callback settings: %s is not a Slack mention (<!subteam^ID>, <@U...>)", where)
    return ""


def _url(value: Any, where: str) -> str:
    if isinstance(value, str) and re.match(r"^https?://[^\s<>|]+$", value):
        return value
    if value not in ("", None):
        log.warning("Callback settings: %s is not an http(s) URL", where)
    return ""


def _rule(raw: Any, n: int) -> Rule | None:
    where = f"routes[{n}]"
    if not isinstance(raw, Mapping):
        log.warning("Callback settings: %s is not an object", where)
        return None
    types = _names(raw.get("termination_type", []))
    owners = _names(raw.get("owner", []))
    tags = raw.get("job_tag", {})
    if types is None or owners is None or not isinstance(tags, Mapping):
        log.warning("Callback settings: %s has a condition of the wrong type", where)
        return None
    channel = raw.get("channel", "")
    if not isinstance(channel, str):
        log.warning("Callback settings: %s.channel is not a text", where)
        return None
    return Rule(
        channel.strip(),
        _mention(raw.get("mention"), f"{where}.mention"),
        frozenset(t.upper() for t in types),
        owners,
        tuple(sorted((str(k), str(v)) for k, v in tags.items())),
    )


def parse(raw: Mapping[str, Any]) -> Settings:
    """Settings from a JSON object; what is wrong is dropped (and logged), the rest kept."""
    routes = raw.get("routes", [])
    if not isinstance(routes, list):
        log.warning("Callback settings: routes is not a list")
        routes = []
    rules = tuple(r for n, raw_rule in enumerate(routes) if (r := _rule(raw_rule, n)))
    mentions = raw.get("mentions", {})
    if not isinstance(mentions, Mapping):
        log.warning("Callback settings: mentions is not an object")
        mentions = {}
    checked = {str(k): _mention(v, f"mentions[{k!r}]") for k, v in mentions.items()}
    mute = _names(raw.get("mute", [])) or frozenset()
    if mute - MUTABLE:
        log.warning("Callback settings: mute accepts %s only", ", ".join(sorted(MUTABLE)))
    last = raw.get("alert_on_last_retry_only", False)
    if not isinstance(last, bool):
        log.warning("Callback settings: alert_on_last_retry_only is not true or false")
        last = False
    error_tasks = raw.get("error_tasks", DEFAULT_ERROR_TASKS)
    if isinstance(error_tasks, bool) or not isinstance(error_tasks, int) or error_tasks < 0:
        log.warning("Callback settings: error_tasks is not a whole number from 0 to 5")
        error_tasks = DEFAULT_ERROR_TASKS
    return Settings(
        rules,
        {k: v for k, v in checked.items() if v and v != OWNER},
        frozenset(m.lower() for m in mute) & MUTABLE,
        last,
        _url(raw.get("dashboard_url"), "dashboard_url"),
        _url(raw.get("runbook_url"), "runbook_url"),
        min(error_tasks, MAX_ERROR_TASKS),
    )


def _variable_text() -> Any:
    try:
        try:
            from airflow.sdk import Variable  # Airflow 3
        except ImportError:
            from airflow.models import Variable  # type: ignore[no-redef]  # Airflow 2
        return Variable.get(VARIABLE, None)
    except Exception as exc:  # no Airflow, no database, no supervisor: the defaults
        log.debug("Callback settings Variable unavailable: %s", type(exc).__name__)
        return None


def load(overrides: Mapping[str, Any] | None = None, raw: Any = ...) -> Settings:
    """The Variable's settings with ``overrides`` on top; defaults when there are none."""
    text = _variable_text() if raw is ... else raw
    base: dict[str, Any] = {}
    if text not in (None, ""):
        try:
            value = json.loads(text) if isinstance(text, str) else text
        except (TypeError, ValueError, RecursionError):
            value = None
        if isinstance(value, Mapping):
            base = dict(value)
        else:
            log.warning("Callback settings: Variable %s is not a JSON object; defaults", VARIABLE)
    return parse({**base, **dict(overrides or {})})
