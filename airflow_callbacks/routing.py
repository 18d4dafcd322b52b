"""Where one event goes, whom it mentions, or why it is not posted (settings.py says how)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from airflow_callbacks.outcomes import outcome
from airflow_callbacks.settings import OWNER, Rule, Settings


@dataclass(frozen=True)
class Route:
    channel: str = ""  # "": the Slack target's own channel
    mention: str = ""
    muted: str = ""  # why the event is not posted, when it is not


@dataclass(frozen=True)
class Event:
    """What routing looks at."""

    kind: str  # "retry", "failure", "recovery"
    owner: str = ""  # the Airflow task's owner (the DAG's default_args), "a, b" for several
    result_state: str = ""  # of the Databricks run, when known
    termination_type: str = ""  # CLIENT_ERROR, CLOUD_FAILURE, INTERNAL_ERROR, SUCCESS
    job_tags: Mapping[str, str] | None = None


def owners(event: Event) -> list[str]:
    names = [name.strip() for name in event.owner.split(",") if name.strip()]
    tagged = (event.job_tags or {}).get("owner", "")
    return names + ([tagged] if tagged and tagged not in names else [])


def matches(rule: Rule, event: Event) -> bool:
    if rule.termination_types and event.termination_type not in rule.termination_types:
        return False
    if rule.owners and not rule.owners.intersection(owners(event)):
        return False
    tags = event.job_tags or {}
    return all(
        tags.get(key) == value or (value == "*" and key in tags) for key, value in rule.job_tags
    )


def route(settings: Settings, event: Event) -> Route:
    if event.kind == "retry" and settings.last_retry_only:
        return Route(muted="alert_on_last_retry_only: a try that will be retried")
    if event.kind != "recovery" and outcome(event.result_state) in settings.mute:
        return Route(muted=f"mute: the Databricks run was {outcome(event.result_state)}")
    rule = next((r for r in settings.routes if matches(r, event)), Rule())
    mention = rule.mention
    if mention == OWNER:
        mention = next((settings.mentions[o] for o in owners(event) if o in settings.mentions), "")
    return Route(rule.channel, mention)
