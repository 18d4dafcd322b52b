"""How the Jobs API words each outcome the exporter must report (the world's runs and the
ground truth both read it)."""

from __future__ import annotations

# result_state label (what the exporter must report) -> how the API words it:
# (legacy life_cycle_state, legacy result_state or None, termination code, termination type,
#  the label a client that reads only `status` must derive).
OUTCOME_WIRE: dict[str, tuple[str, str | None, str, str, str]] = {
    "SUCCESS": ("TERMINATED", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": (
        "TERMINATED",
        "SUCCESS_WITH_FAILURES",
        "SUCCESS_WITH_FAILURES",
        "SUCCESS",
        "SUCCESS_WITH_FAILURES",
    ),
    "FAILED": ("TERMINATED", "FAILED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR", "FAILED"),
    "TIMEDOUT": ("TERMINATED", "TIMEDOUT", "CANCELED", "CLIENT_ERROR", "TIMEDOUT"),
    "CANCELED": ("TERMINATED", "CANCELED", "USER_CANCELED", "SUCCESS", "CANCELED"),
    "INTERNAL_ERROR": (
        "INTERNAL_ERROR",
        None,
        "INTERNAL_ERROR",
        "INTERNAL_ERROR",
        "INTERNAL_ERROR",
    ),
    "SKIPPED": ("SKIPPED", None, "SKIPPED", "SUCCESS", "SKIPPED"),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": (
        "SKIPPED",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
        "MAX_CONCURRENT_RUNS_EXCEEDED",
        "CLIENT_ERROR",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
    ),
    "EXCLUDED": ("TERMINATED", "EXCLUDED", "SKIPPED", "SUCCESS", "SKIPPED"),
    "DISABLED": ("TERMINATED", "DISABLED", "DISABLED", "CLIENT_ERROR", "DISABLED"),
    "UPSTREAM_FAILED": ("TERMINATED", "UPSTREAM_FAILED", "SKIPPED", "CLIENT_ERROR", "SKIPPED"),
    "UPSTREAM_CANCELED": ("TERMINATED", "UPSTREAM_CANCELED", "SKIPPED", "SUCCESS", "SKIPPED"),
}
