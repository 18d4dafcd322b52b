"""What a run's end means: the one definition of outcomes used by the exporter, the alert rules
and the dashboards (generated from it). The Airflow callbacks, a distribution of their own, keep
a copy (airflow_callbacks/outcomes.py) that tests/test_packaging.py keeps equal to this one.

Jobs API 2.2 deprecates ``state`` (``life_cycle_state`` + ``result_state``) in favour of
``status`` (``state`` + ``termination_details.code/type``). We read ``status`` first and fall
back to ``state``; every run ends up with one ``result_state`` label from the vocabulary below,
and every label value belongs to exactly one outcome:

- failed: the run tried and did not do its work (Databricks sends ``on_failure`` for these).
- succeeded: the run did its work (``SUCCESS_WITH_FAILURES``: its leaf tasks succeeded; the
  failed inner tasks are still counted in ``databricks_task_runs_total``).
- canceled: somebody stopped it on purpose.
- skipped: it never ran (concurrency limit, condition, upstream failure, disabled).
- other: no result reported (``NONE``) or a value this version does not know yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.text import valid_text

FAILED = "failed"
SUCCEEDED = "succeeded"
CANCELED = "canceled"
SKIPPED = "skipped"
OTHER = "other"
OUTCOMES = (FAILED, SUCCEEDED, CANCELED, SKIPPED, OTHER)

NO_RESULT = "NONE"

# result_state label -> (outcome, why): the README's table is this table.
RESULT_STATES: dict[str, tuple[str, str]] = {
    "SUCCESS": (SUCCEEDED, "completed successfully"),
    "SUCCESS_WITH_FAILURES": (
        SUCCEEDED,
        "leaf tasks succeeded though some inner tasks failed (those count as failed tasks)",
    ),
    "FAILED": (FAILED, "completed with an error"),
    "TIMEDOUT": (FAILED, "stopped after reaching its timeout"),
    "INTERNAL_ERROR": (FAILED, "the Jobs service or the platform failed the run"),
    "CANCELED": (CANCELED, "canceled at a user's request"),
    "UPSTREAM_CANCELED": (SKIPPED, "not run: an upstream task was canceled"),
    "UPSTREAM_FAILED": (SKIPPED, "not run: an upstream task failed (that task counts as failed)"),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": (
        SKIPPED,
        "not run: the job's max_concurrent_runs was reached",
    ),
    "EXCLUDED": (SKIPPED, "not run: its run condition was not met"),
    "DISABLED": (SKIPPED, "not run: disabled by a user"),
    "SKIPPED": (SKIPPED, "not run (life cycle SKIPPED without a result)"),
    NO_RESULT: (OTHER, "ended without any result (neither status nor state gave one)"),
}

# status.termination_details.code -> result_state label.
TERMINATION_CODES: dict[str, str] = {
    "SUCCESS": "SUCCESS",
    "SUCCESS_WITH_FAILURES": "SUCCESS_WITH_FAILURES",
    "USER_CANCELED": "CANCELED",
    # Canceled by the platform, e.g. the maximum run duration was exceeded: the legacy state
    # calls this TIMEDOUT, and nobody asked for it, so it is a failure.
    "CANCELED": "TIMEDOUT",
    "SKIPPED": "SKIPPED",
    "DISABLED": "DISABLED",
    "MAX_CONCURRENT_RUNS_EXCEEDED": "MAXIMUM_CONCURRENT_RUNS_REACHED",
    "MAX_JOB_QUEUE_SIZE_EXCEEDED": "MAXIMUM_CONCURRENT_RUNS_REACHED",
    "INTERNAL_ERROR": "INTERNAL_ERROR",
    "BREAKING_CHANGE": "FAILED",
    "BUDGET_POLICY_LIMIT_EXCEEDED": "FAILED",
    "CLOUD_FAILURE": "FAILED",
    "CLUSTER_ERROR": "FAILED",
    "CLUSTER_REQUEST_LIMIT_EXCEEDED": "FAILED",
    "CLUSTER_TERMINATED_BY_USER": "FAILED",
    "DRIVER_ERROR": "FAILED",
    "FEATURE_DISABLED": "FAILED",
    "INVALID_CLUSTER_REQUEST": "FAILED",
    "INVALID_RUN_CONFIGURATION": "FAILED",
    "LIBRARY_INSTALLATION_ERROR": "FAILED",
    "MAX_SPARK_CONTEXTS_EXCEEDED": "FAILED",
    "REPOSITORY_CHECKOUT_FAILED": "FAILED",
    "RESOURCE_NOT_FOUND": "FAILED",
    "RUN_EXECUTION_ERROR": "FAILED",
    "STORAGE_ACCESS_ERROR": "FAILED",
    "UNAUTHORIZED_ERROR": "FAILED",
    "WORKSPACE_RUN_LIMIT_EXCEEDED": "FAILED",
}

# A termination code this version does not know is judged by termination_details.type.
TERMINATION_TYPES: dict[str, str] = {
    "SUCCESS": "SUCCESS",
    "CLIENT_ERROR": "FAILED",
    "CLOUD_FAILURE": "FAILED",
    "INTERNAL_ERROR": "INTERNAL_ERROR",
}

# Life cycles: status.state (2.2) and state.life_cycle_state (legacy) share most names.
TERMINAL_LIFE_CYCLES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
ACTIVE_LIFE_CYCLES = frozenset(
    {"QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY", "WAITING"}
)
QUEUED_LIFE_CYCLES = frozenset({"QUEUED", "BLOCKED"})  # waiting, not running: not "stuck"
CONTINUOUS_TRIGGERS = frozenset({"CONTINUOUS", "CONTINUOUS_RESTART"})
# Run types that create an ephemeral job per run (runs/submit, dbutils.notebook.run).
ONE_TIME_RUN_TYPES = frozenset({"SUBMIT_RUN", "WORKFLOW_RUN"})


def outcome(result_state: str) -> str:
    """The outcome of a result_state label; unknown values are ``other``."""
    entry = RESULT_STATES.get(result_state)
    return entry[0] if entry else OTHER


def is_failure(result_state: str) -> bool:
    return outcome(result_state) == FAILED


def results_of(wanted: str) -> tuple[str, ...]:
    """The result_state labels of one outcome, in table order."""
    return tuple(r for r, (o, _) in RESULT_STATES.items() if o == wanted)


def promql_matcher(wanted: str) -> str:
    """A PromQL label matcher for one outcome: result_state=~"A|B|C"."""
    return f'result_state=~"{"|".join(results_of(wanted))}"'


def _obj(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _name(value: Any) -> str:
    return valid_text(value.strip().upper()) if isinstance(value, str) else ""


def life_cycle_of(raw: Mapping[str, Any]) -> str:
    """status.state, else state.life_cycle_state, else UNKNOWN."""
    status = _name(_obj(raw, "status").get("state"))
    legacy = _name(_obj(raw, "state").get("life_cycle_state"))
    if status == "TERMINATED" and legacy in TERMINAL_LIFE_CYCLES:
        return legacy  # SKIPPED / INTERNAL_ERROR say more than TERMINATED
    return status or legacy or "UNKNOWN"


def result_state_of(raw: Mapping[str, Any], life_cycle: str | None = None) -> str:
    """The result_state label of a run or task object (meaningful once it is terminal).

    ``status.termination_details`` decides the outcome; the legacy ``state.result_state`` names
    it when both agree on the outcome (it says UPSTREAM_FAILED where the code says SKIPPED).
    """
    details = _obj(_obj(raw, "status"), "termination_details")
    code = _name(details.get("code"))
    from_status = TERMINATION_CODES.get(code) or TERMINATION_TYPES.get(_name(details.get("type")))
    legacy = _name(_obj(raw, "state").get("result_state"))
    if from_status:
        return legacy if legacy and outcome(legacy) == outcome(from_status) else from_status
    if legacy:
        return legacy
    life_cycle = life_cycle if life_cycle is not None else life_cycle_of(raw)
    if life_cycle in ("INTERNAL_ERROR", "SKIPPED"):
        return life_cycle
    return NO_RESULT


def state_message_of(raw: Mapping[str, Any]) -> str:
    """termination_details.message, else state.state_message."""
    details = _obj(_obj(raw, "status"), "termination_details")
    message = details.get("message") or _obj(raw, "state").get("state_message")
    return message.strip() if isinstance(message, str) else ""
