"""The Prometheus alert rules, described once with the selector and thresholds of the config.

`mixin/generate.py` writes them as a rule file (alerts/databricks.rules.yml) and as a
PrometheusRule for the Prometheus Operator.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap

from exporter import outcomes
from exporter.catalogue import (
    API_RETRIES,
    COLLECTION_INTERVAL,
    COLLECTION_SUCCESS,
    LAST_SUCCESS,
    STATE_LAST_WRITE,
    STATE_WRITE_ERRORS,
)
from exporter.collectors.jobs.families import (
    JOB_INFO,
    RUN_DURATION_THRESHOLD,
    SCHEDULE_INTERVAL,
    SCHEDULE_LIVE_SINCE,
    SCHEDULE_PAUSED,
    TIMEOUT,
)
from exporter.collectors.pipelines.families import LAST_UPDATE_ERROR, LAST_UPDATE_FAILED
from exporter.collectors.pools.families import (
    COUNTS,
    IDLE_COST,
    MAX_CAPACITY,
    PENDING_ERROR_INFO,
    PENDING_ERRORS,
)
from exporter.collectors.runs.families import (
    JOB_ACTIVE_RUN_MAX_AGE,
    JOB_CONTINUOUS,
    JOB_LAST_RUN_DURATION,
    JOB_LAST_RUN_FAILED,
    JOB_LAST_RUN_INFO,
    JOB_LAST_SUCCESS,
    JOB_RUN_DURATION,
    JOB_RUNS,
    JOB_RUNS_BY_COMPUTE,
    JOBS_FOLDED,
    LOOKBACK_PROGRESS,
    LOOKBACK_START,
)
from mixin.settings import Settings

FAILED = outcomes.promql_matcher(outcomes.FAILED)
JOBS = "/d/databricks-jobs/databricks-jobs?var-workspace={{ $labels.workspace }}&var-job={{ $labels.job_name }}"
POOLS = "/d/databricks-pools/databricks-instance-pools?var-workspace={{ $labels.workspace }}"
PIPELINES = "/d/databricks-jobs/databricks-jobs?var-workspace={{ $labels.workspace }}"
EXPORTER = "/d/databricks-exporter/databricks-exporter?var-workspace={{ $labels.workspace }}"


@dataclasses.dataclass(frozen=True)
class Rule:
    alert: str
    comment: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    dashboard: str
    extra: dict[str, str] = dataclasses.field(default_factory=dict)

    def annotations(self, s: Settings) -> dict[str, str]:
        return {
            "summary": self.summary,
            "description": self.description,
            **self.extra,
            "dashboard": s.dashboard_link(self.dashboard),
            "runbook_url": s.runbook_link(self.alert),
        }

    def to_dict(self, s: Settings) -> dict[str, object]:
        return {
            "alert": self.alert,
            "expr": self.expr.strip() + "\n",
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": self.annotations(s),
        }


def groups(s: Settings) -> list[tuple[str, list[Rule]]]:
    return [
        ("databricks-jobs", jobs(s)),
        ("databricks-job-promises", promises(s)),
        ("databricks-pools", pools(s)),
        ("databricks-pipelines", pipelines(s)),
        ("databricks-exporter", exporter(s)),
    ]


def _h(value: float) -> str:
    return f"{value:g} hours"


def _times(value: float, one: str = "1 time") -> str:
    if value == 1:
        return one
    return "twice" if value == 2 else f"{value:g} times"


def jobs(s: Settings) -> list[Rule]:
    t, m = s.thresholds, s.m
    job = "{{ $labels.job_name }} (id {{ $labels.job_id }}) in workspace {{ $labels.workspace }}"
    return [
        Rule(
            "DatabricksJobRunFailed",
            "The job's last terminal run (or its last repair) failed: FAILED, TIMEDOUT or "
            'INTERNAL_ERROR (README, "Outcomes"); resolves when a later run or a repair succeeds. '
            "Built on gauges, so an exporter restart neither fires nor resolves it.",
            f"""
({m(JOB_LAST_RUN_FAILED.name)} == 1)
* on (workspace, job_id) group_left (run_id, run_page_url, result_state)
  {m(JOB_LAST_RUN_INFO.name)}
""",
            "1m",
            "warning",
            "Databricks job {{ $labels.job_name }} failed ({{ $labels.result_state }})",
            "The last run {{ $labels.run_id }} of job " + job + " ended "
            "{{ $labels.result_state }}. Run page: {{ $labels.run_page_url }}",
            JOBS,
            {"run_page_url": "{{ $labels.run_page_url }}"},
        ),
        Rule(
            "DatabricksJobFailingRepeatedly",
            f"{t.failed_runs} or more failed runs of one job within {t.failed_runs_window}. The "
            'matcher is exporter/outcomes.py\'s "failed" (a test keeps them equal).',
            f"""
sum by (workspace, job_id, job_name) (
  increase({m(JOB_RUNS.name, FAILED)}[{t.failed_runs_window}])
) >= {t.failed_runs}
""",
            "5m",
            "critical",
            'Databricks job {{ $labels.job_name }} failed {{ $value | printf "%.0f" }} times '
            f"in {t.failed_runs_window}",
            "Job " + job + " has failed repeatedly; this is not a one-off.",
            JOBS,
        ),
        Rule(
            "DatabricksJobNotSucceededRecently",
            f"No successful run for {_h(t.not_succeeded_hours)} (the default, 26: a daily job "
            "that missed a day, with 2 hours of slack).",
            f"""
time() - {m(JOB_LAST_SUCCESS.name)} > {t.not_succeeded_hours:g} * 3600
""",
            "15m",
            "warning",
            "Databricks job {{ $labels.job_name }} has not succeeded for "
            "{{ $value | humanizeDuration }}",
            "Job " + job + " last succeeded {{ $value | humanizeDuration }} ago "
            f"(threshold {t.not_succeeded_hours:g}h).",
            JOBS,
        ),
        Rule(
            "DatabricksJobRunSlow",
            f"The last run took more than {_times(t.slow_factor)} the job's 7-day p95, and over "
            f"{t.slow_min_minutes:g} minutes.",
            f"""
{m(JOB_LAST_RUN_DURATION.name)}
> on (workspace, job_id, job_name) group_left () {t.slow_factor:g} * histogram_quantile(0.95,
        sum by (workspace, job_id, job_name, le) (rate({m(JOB_RUN_DURATION.name + "_bucket")}[7d])))
and {m(JOB_LAST_RUN_DURATION.name)} > {t.slow_min_minutes * 60:g}
""",
            "5m",
            "warning",
            "Databricks job {{ $labels.job_name }} ran {{ $value | humanizeDuration }}, far "
            "above its usual",
            "The last run of job " + job + " took {{ $value | humanizeDuration }}, more than "
            f"{_times(t.slow_factor)} its 7-day p95.",
            JOBS,
        ),
        Rule(
            "DatabricksJobRunStuck",
            f"A run has been running (time in the queue not counted) for more than "
            f"{_h(t.stuck_hours)}. Continuous jobs always have a run active: they are never "
            '"stuck".',
            f"""
{m(JOB_ACTIVE_RUN_MAX_AGE.name)} > {t.stuck_hours:g} * 3600
unless on (workspace, job_id) {m(JOB_CONTINUOUS.name)} == 1
""",
            "15m",
            "warning",
            "Databricks job {{ $labels.job_name }} has a run active for "
            "{{ $value | humanizeDuration }}",
            "The oldest active run of job " + job + " started {{ $value | humanizeDuration }} "
            f"ago (threshold {t.stuck_hours:g}h).",
            JOBS,
        ),
    ]


def promises(s: Settings) -> list[Rule]:
    """Alerts from what each job's own settings promise (the jobs collector): its run duration
    threshold, its timeout, its schedule's period."""
    t, m = s.thresholds, s.m
    job = "{{ $labels.job_name }} (id {{ $labels.job_id }}) in workspace {{ $labels.workspace }}"
    periods = f"{t.not_succeeding_periods:g}"
    margin = (
        f"clamp_min({t.near_timeout_ratio:g} * {m(TIMEOUT.name)}, "
        f"{t.near_timeout_min_minutes * 60:g})"
    )
    half = f"0.5 * {m(TIMEOUT.name)}"
    return [
        Rule(
            "DatabricksJobRunOverDurationThreshold",
            "An active run has been running longer than its job's own duration threshold (the "
            "health rule RUN_DURATION_SECONDS GREATER_THAN set on the job). The age counts the "
            "time running, not the time queued.",
            f"""
{m(JOB_ACTIVE_RUN_MAX_AGE.name)}
> on (workspace, job_id) group_left ()
  {m(RUN_DURATION_THRESHOLD.name)}
""",
            "5m",
            "warning",
            "Databricks job {{ $labels.job_name }} runs past its duration threshold",
            "The oldest active run of job " + job + " has been running for "
            "{{ $value | humanizeDuration }}, past the job's own RUN_DURATION_SECONDS threshold.",
            JOBS,
        ),
        Rule(
            "DatabricksJobRunNearTimeout",
            f"An active run is close to its job's timeout_seconds (Databricks then ends it "
            f"TIMEDOUT): less than {t.near_timeout_ratio:g} of the timeout, or "
            f"{t.near_timeout_min_minutes:g} minutes if more, is left (at most half the "
            "timeout: a short timeout does not fire at the run's start).",
            f"""
{m(JOB_ACTIVE_RUN_MAX_AGE.name)}
> on (workspace, job_id) group_left ()
  (
    {m(TIMEOUT.name)}
    - ({margin} <= {half} or {half})
  )
""",
            "1m",
            "warning",
            "Databricks job {{ $labels.job_name }} is about to time out",
            "The oldest active run of job " + job + " has been running for "
            "{{ $value | humanizeDuration }}, close to the job's timeout_seconds: Databricks "
            "ends it TIMEDOUT when it is reached.",
            JOBS,
        ),
        Rule(
            "DatabricksScheduledJobNotSucceeding",
            f"A job with an unpaused schedule (cron or periodic) has not succeeded for "
            f"{periods} of its periods: its last success is older, or the exporter read runs "
            f"back over {periods} periods (the look-back done) and found none. Jobs whose "
            f"schedule has been live (unpaused, or created) for less than {periods} periods, "
            "paused jobs, schedules without a known period, and (without a known success) "
            "workspaces whose runs collector folds jobs never fire.",
            f"""
(
    time() - {m(JOB_LAST_SUCCESS.name)}
  > on (workspace, job_id) group_left ()
    {periods} * {m(SCHEDULE_INTERVAL.name)}
or
  (
      (0 * {m(SCHEDULE_INTERVAL.name)} + on (workspace) group_left () (time() - {m(LOOKBACK_START.name)}))
    > {periods} * {m(SCHEDULE_INTERVAL.name)}
  )
  unless on (workspace, job_id) {m(JOB_LAST_SUCCESS.name)}
  and on (workspace) ({m(LOOKBACK_PROGRESS.name)} == 1)
  unless on (workspace) ({m(JOBS_FOLDED.name)} > 0)
)
and on (workspace, job_id) ({m(SCHEDULE_PAUSED.name)} == 0)
and on (workspace, job_id) (time() - {m(SCHEDULE_LIVE_SINCE.name)} > {periods} * {m(SCHEDULE_INTERVAL.name)})
""",
            "15m",
            "warning",
            "Databricks job {{ $labels.job_name }} has not succeeded for "
            f"{periods} of its schedule's periods",
            "Job " + job + " is scheduled and not paused, but has not succeeded for "
            "{{ $value | humanizeDuration }} "
            f"(more than {periods} times its schedule's period; without a known success, as far "
            "back as the exporter read).",
            JOBS,
        ),
        Rule(
            "DatabricksScheduledJobOnAllPurposeCompute",
            "A scheduled job (cron or periodic) ran on all-purpose compute in the last day: "
            "job compute costs less per DBU, and a shared cluster makes runs wait on each "
            "other.",
            f"""
sum by (workspace, job_id, job_name) (
  increase({m(JOB_RUNS_BY_COMPUTE.name, 'compute="all_purpose"')}[1d])
) > 0
and on (workspace, job_id) {m(JOB_INFO.name, 'trigger=~"cron|periodic"')}
and on (workspace, job_id) ({m(SCHEDULE_PAUSED.name)} == 0)
""",
            "15m",
            "info",
            "Databricks scheduled job {{ $labels.job_name }} runs on all-purpose compute",
            "Scheduled job " + job + ' ran {{ $value | printf "%.0f" }} time(s) on an '
            "all-purpose cluster in the last day; give it a job cluster (or serverless) instead.",
            JOBS,
        ),
    ]


def pools(s: Settings) -> list[Rule]:
    t, m = s.thresholds, s.m
    pool = "{{ $labels.pool_name }} ({{ $labels.pool_id }}) in workspace {{ $labels.workspace }}"
    return [
        Rule(
            "DatabricksPoolAtMaxCapacity",
            "Every instance the pool may have is taken or starting: new clusters wait.",
            f"""
(
    {m(COUNTS["used"].name)} + {m(COUNTS["idle"].name)}
  + {m(COUNTS["pending_used"].name)} + {m(COUNTS["pending_idle"].name)}
) >= {m(MAX_CAPACITY.name)}
""",
            "15m",
            "warning",
            "Databricks pool {{ $labels.pool_name }} is at its max capacity",
            "Pool " + pool + " has used its max_capacity for 15 minutes; clusters that need "
            "it wait or fail.",
            POOLS,
        ),
        Rule(
            "DatabricksPoolInstancesFailingToStart",
            "Instances of the pool fail to start (Azure quota or capacity): clusters wait.",
            f"""
({m(PENDING_ERRORS.name)} > 0)
* on (workspace, pool_id) group_left (message)
  {m(PENDING_ERROR_INFO.name)}
""",
            "10m",
            "warning",
            "Databricks pool {{ $labels.pool_name }} cannot start {{ $value }} instance(s)",
            "Pool " + pool + " has had instances failing to start for 10 minutes: "
            "{{ $labels.message }}",
            POOLS,
        ),
        Rule(
            "DatabricksPoolIdleAboveMinimum",
            f"More than {t.idle_above_min_instances} idle instances above min_idle for 2 hours: "
            "paid for, not used.",
            f"""
{m(COUNTS["idle"].name)} - {m(COUNTS["min_idle"].name)} > {t.idle_above_min_instances}
""",
            "2h",
            "info",
            "Databricks pool {{ $labels.pool_name }} keeps {{ $value }} idle instances above "
            "its minimum",
            "Pool " + pool + " has had idle instances above min_idle_instances for 2 hours; "
            "lower idle_instance_autotermination_minutes or the pool's size.",
            POOLS,
        ),
        Rule(
            "DatabricksPoolIdleCostHigh",
            f"Idle instances of the pool cost more than {t.idle_cost_per_day:g} (in the price "
            "table's currency) over the last 24 hours. Needs `prices:` in the exporter's "
            "config; thresholds.idle_cost_per_day in the mixin's config sets the budget.",
            f"""
sum by (workspace, pool_id, pool_name, currency) (
  increase({m(IDLE_COST.name)}[1d])
) > {t.idle_cost_per_day:g}
""",
            "30m",
            "info",
            "Databricks pool {{ $labels.pool_name }}: idle instances cost "
            '{{ $value | printf "%.0f" }} {{ $labels.currency }} in 24 hours',
            "Idle instances of pool " + pool + f" cost more than {t.idle_cost_per_day:g} "
            "{{ $labels.currency }} of VM time over the last 24 hours (no DBUs: VM price only). "
            "Lower min_idle_instances or idle_instance_autotermination_minutes; the pools "
            "dashboard shows what each would save.",
            POOLS,
        ),
    ]


def pipelines(s: Settings) -> list[Rule]:
    m = s.m
    pipeline = (
        "{{ $labels.pipeline_name }} (id {{ $labels.pipeline_id }}) in workspace "
        "{{ $labels.workspace }}"
    )
    return [
        Rule(
            "DatabricksPipelineUpdateFailed",
            "The Lakeflow (DLT) pipeline's last ended update FAILED, whatever the pipeline's "
            "state (it is IDLE after a failed update); resolves when a later update ends "
            "otherwise. Built on gauges, so an exporter restart neither fires nor resolves it.",
            f"""
({m(LAST_UPDATE_FAILED.name)} == 1)
* on (workspace, pipeline_id) group_left (update_id, message)
  {m(LAST_UPDATE_ERROR.name)}
""",
            "1m",
            "warning",
            "Databricks pipeline {{ $labels.pipeline_name }} failed",
            "The last update {{ $labels.update_id }} of pipeline " + pipeline + " FAILED: "
            "{{ $labels.message }}",
            PIPELINES,
        ),
    ]


def exporter(s: Settings) -> list[Rule]:
    t, m = s.thresholds, s.m
    where = "{{ $labels.collector }} from {{ $labels.workspace }}"
    return [
        Rule(
            "DatabricksExporterDown",
            "Prometheus cannot scrape the exporter (the scrape job the selector names).",
            f"""
{m("up")} == 0
""",
            "5m",
            "critical",
            "Databricks exporter {{ $labels.instance }} is down",
            "Prometheus has not scraped {{ $labels.instance }} for 5 minutes: no Databricks job "
            "alert can fire.",
            "/d/databricks-exporter/databricks-exporter",
        ),
        Rule(
            "DatabricksExporterCollectionFailing",
            "The last collections of a collector failed for 15 minutes (auth, permissions, API "
            "down).",
            f"""
{m(COLLECTION_SUCCESS.name)} == 0
""",
            "15m",
            "warning",
            "Databricks exporter cannot collect " + where,
            "Collection {{ $labels.collector }} of workspace {{ $labels.workspace }} has failed "
            "for 15 minutes; the exporter serves the last good values. Its log names the error "
            "(401, 403, timeouts).",
            EXPORTER,
        ),
        Rule(
            "DatabricksExporterDataStale",
            f"No successful collection for {t.data_stale_minutes:g} minutes (or three of the "
            "collector's intervals, if longer: jobs_interval), whatever the reason.",
            f"""
time() - {m(LAST_SUCCESS.name)}
> on (job, instance, workspace, collector)
  clamp_min(3 * {m(COLLECTION_INTERVAL.name)}, {t.data_stale_minutes * 60:g})
""",
            "5m",
            "warning",
            "Databricks {{ $labels.collector }} data of {{ $labels.workspace }} is "
            "{{ $value | humanizeDuration }} old",
            "The exporter has not collected {{ $labels.collector }} from workspace "
            "{{ $labels.workspace }} successfully for {{ $value | humanizeDuration }}; "
            "dashboards and job alerts show old data.",
            EXPORTER,
        ),
        Rule(
            "DatabricksExporterStateWriteFailing",
            "The --state-file could not be written for 10 minutes (a full or read-only disk): "
            "a restart now loses the pools' integrals.",
            f"""
increase({m(STATE_WRITE_ERRORS.name)}[10m]) > 0
unless on (job, instance, workspace)
time() - {m(STATE_LAST_WRITE.name)} <= 600
""",
            "5m",
            "warning",
            "Databricks exporter cannot write its state file for {{ $labels.workspace }}",
            "The exporter's --state-file has not been written for workspace "
            "{{ $labels.workspace }} for over 10 minutes (its log says why: disk full, read-only, "
            "gone). Counting goes on; a restart now starts the pools' instance-seconds from zero "
            "and lists again the runs since the last good write.",
            EXPORTER,
        ),
        Rule(
            "DatabricksApiThrottled",
            f"Databricks answered 429 more than {_times(t.throttled_per_minute, 'once')} a minute on "
            "average over 15 minutes.",
            f"""
sum by (workspace) (rate({m(API_RETRIES.name, 'reason="429"')}[15m])) * 60 > {t.throttled_per_minute:g}
""",
            "15m",
            "warning",
            "Databricks API throttles the exporter in {{ $labels.workspace }}",
            'Workspace {{ $labels.workspace }} answered {{ $value | printf "%.1f" }} requests '
            "a minute with 429; raise --interval or spread workspaces over several exporters.",
            EXPORTER,
        ),
    ]


def as_dicts(s: Settings) -> list[dict[str, object]]:
    """The rule groups as Prometheus reads them."""
    return [{"name": name, "rules": [r.to_dict(s) for r in rules]} for name, rules in groups(s)]


def rule_file(s: Settings, header: str) -> str:
    """A Prometheus rule file, each rule with its comment (what it means) above its query."""
    lines = [*header.splitlines(), "groups:"]
    for name, rules in groups(s):
        lines += [f"  - name: {name}", "    rules:"]
        for i, rule in enumerate(rules):
            lines += [""] * (i > 0) + [f"      - alert: {rule.alert}"]
            lines += [f"        # {c}" for c in textwrap.wrap(rule.comment, 88)]
            lines += ["        expr: |"] + [
                f"          {e}" for e in rule.expr.strip().splitlines()
            ]
            lines += [
                f"        for: {rule.for_}",
                "        labels:",
                f"          severity: {rule.severity}",
            ]
            lines.append("        annotations:")
            # JSON strings are YAML double-quoted scalars.
            lines += [f"          {k}: {json.dumps(v)}" for k, v in rule.annotations(s).items()]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
