"""The Grafana dashboards, built with Grafana's own SDK (grafana-foundation-sdk).

Each panel is described once here; `mixin/generate.py` renders them with the selector and
thresholds of mixin/config.yml (or yours) to JSON for file provisioning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from exporter import outcomes
from exporter.catalogue import (
    API_REQUESTS,
    API_RETRIES,
    COLLECTION_DURATION,
    COLLECTION_SUCCESS,
    LAST_SUCCESS,
    TOKEN_REQUESTS,
)
from exporter.collectors.jobs.families import (
    JOB_INFO,
    RUN_DURATION_THRESHOLD,
    SCHEDULE_INTERVAL,
    SCHEDULE_PAUSED,
    TIMEOUT,
)
from exporter.collectors.pipelines.families import (
    LAST_UPDATE_ERROR,
    LAST_UPDATE_FAILED,
    LAST_UPDATE_START,
    PIPELINE_INFO,
    UPDATE_DURATION,
    UPDATES,
    UPDATES_RUNNING,
)
from exporter.collectors.pools.families import (
    AUTOTERMINATION,
    COUNTS,
    IDLE_COST,
    MAX_CAPACITY,
    PENDING_ERROR_INFO,
    PENDING_ERRORS,
    POOL_INFO,
    UNPRICED,
    USAGE,
    VM_PRICE,
)
from exporter.collectors.runs.families import (
    CLUSTER_SETUP,
    JOB_ACTIVE_RUN_MAX_AGE,
    JOB_LAST_RUN_DURATION,
    JOB_LAST_RUN_END,
    JOB_LAST_RUN_INFO,
    JOB_LAST_SUCCESS,
    JOB_RUN_DURATION,
    JOB_RUN_PHASE,
    JOB_RUN_REPAIRS,
    JOB_RUNS,
    JOB_RUNS_ACTIVE,
    JOB_RUNS_BY_COMPUTE,
    ONE_TIME_RUNS,
)
from mixin.settings import Settings

Dashboard = model.Dashboard
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The one definition of outcomes (exporter/outcomes.py): never a regex typed twice.
FAILED = outcomes.promql_matcher(outcomes.FAILED)
FAILED_LIST = ", ".join(outcomes.results_of(outcomes.FAILED))
KINDS: dict[str, Callable[[], Any]] = {
    "stat": stat.Panel,
    "timeseries": timeseries.Panel,
    "bargauge": bargauge.Panel,
    "table": table.Panel,
}

OUTCOME_COLORS = {
    outcomes.FAILED: "red",
    outcomes.SUCCEEDED: "green",
    outcomes.CANCELED: "orange",
    outcomes.SKIPPED: "blue",
    outcomes.OTHER: "text",
}


def _matchers(s: Settings, with_job: bool = False) -> str:
    """The label matchers of every query: the scrape selector, then the dashboard's variables."""
    if with_job:
        return s.matchers('workspace=~"$workspace"', 'job_name=~"$job"')
    return s.matchers('workspace=~"$workspace"')


def _price(wm: str) -> str:
    """Joins a pool's series to its VM price per hour (and currency) from the price table."""
    return f" * on (workspace, pool_id, pool_name) group_left (currency) {VM_PRICE.name}{{{wm}}}"


def variables(s: Settings, with_job: bool) -> list[Builder[model.VariableModel]]:
    items: list[Builder[model.VariableModel]] = [
        board.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        _query_var(
            "workspace",
            "Workspace",
            f"label_values({s.m(COLLECTION_SUCCESS.name)}, workspace)",
        ),
    ]
    if with_job:
        items.append(
            _query_var(
                "job",
                "Job",
                f"label_values({JOB_LAST_RUN_INFO.name}{{{_matchers(s)}}}, job_name)",
            )
        )
    return items


def _textbox(name: str, label: str, value: str) -> Builder[model.VariableModel]:
    return (
        board.TextBoxVariable(name)
        .label(label)
        .default_value(value)
        .current(model.VariableOption(selected=False, text=value, value=value))
    )


def _query_var(name: str, label: str, query: str) -> Builder[model.VariableModel]:
    return (
        board.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


class Layout:
    """Panels in order, with their width and height on Grafana's 24-column grid; the SDK
    places them left to right."""

    def __init__(self) -> None:
        self.panels: list[Any] = []

    def add(self, panel: Any, w: int, h: int) -> None:
        self.panels.append(panel.id(len(self.panels) + 1).span(w).height(h))


def thresholds(*steps: tuple[float | None, str]) -> board.ThresholdsConfig:
    return (
        board.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def panel(
    kind: str,
    title: str,
    description: str,
    unit: str,
    targets: list[tuple[str, str]],
    instant: bool = False,
    defaults: dict[str, Any] | None = None,
    overrides: list[tuple[str, list[tuple[str, Any]]]] | None = None,
    transformations: list[tuple[str, dict[str, Any]]] | None = None,
) -> Any:
    p = KINDS[kind]().title(title).description(description).datasource(DS).unit(unit)
    for i, (expr, legend) in enumerate(targets):
        query = prom.Dataquery().ref_id(chr(ord("A") + i)).datasource(DS).expr(expr)
        query = query.legend_format(legend)
        query = query.instant() if instant else query.range()
        if kind == "table":
            query = query.format(PromQueryFormat.TABLE)
        p = p.with_target(query)
    for key, value in (defaults or {}).items():
        p = getattr(p, key)(value)
    for name, properties in overrides or []:
        p = p.override_by_name(name, [model.DynamicConfigValue(k, v) for k, v in properties])
    for transformer, options in transformations or []:
        p = p.with_transformation(model.DataTransformerConfig(transformer, options=options))
    return p


def merged_columns(*names: str) -> list[tuple[str, dict[str, Any]]]:
    """A table's transformations: queries A, B, ... merged into one row per series, their
    values renamed ``names`` in order."""
    renames = {f"Value #{chr(ord('A') + i)}": name for i, name in enumerate(names)}
    return [
        ("merge", {}),
        ("organize", {"excludeByName": {"Time": True}, "renameByName": renames}),
    ]


def info_table(title: str, description: str, expr: str) -> Any:
    """A table of an _info gauge's labels (the value, always 1, and scrape labels hidden)."""
    hidden = {"Time": True, "Value": True, "__name__": True, "instance": True, "job": True}
    return panel(
        "table",
        title,
        description,
        "none",
        [(expr, "")],
        instant=True,
        transformations=[("organize", {"excludeByName": hidden})],
    )


def dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    s: Settings,
    with_job: bool,
    extra_variables: list[Builder[model.VariableModel]] | None = None,
) -> Dashboard:
    d = (
        board.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["databricks"])
        .timezone("browser")
        .version(1)
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .time("now-24h", "now")
        .variables(variables(s, with_job) + (extra_variables or []))
        .link(
            board.DashboardLink("Databricks")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["databricks"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for p in layout.panels:
        d = d.with_panel(p)
    return d.build()


def jobs(s: Settings) -> Dashboard:
    lay = Layout()
    jm, wm = _matchers(s, with_job=True), _matchers(s)
    stuck = s.thresholds.stuck_hours * 3600
    runs = f"{JOB_RUNS.name}{{{jm}}}"
    failed = f"{JOB_RUNS.name}{{{jm},{FAILED}}}"
    lay.add(
        panel(
            "stat",
            "Runs in range",
            "Job runs that ended in the selected time range.",
            "short",
            [(f"sum(increase({runs}[$__range]))", "runs")],
            instant=True,
        ),
        6,
        4,
    )
    lay.add(
        panel(
            "stat",
            "Failed runs in range",
            f"Runs whose result counts as failed: {FAILED_LIST}.",
            "short",
            [(f"sum(increase({failed}[$__range])) or vector(0)", "failed")],
            instant=True,
            defaults={"thresholds": thresholds((None, "green"), (1, "red"))},
        ),
        6,
        4,
    )
    lay.add(
        panel(
            "stat",
            "Active runs",
            "Runs not terminal yet (queued, pending, running).",
            "short",
            [(f"sum({JOB_RUNS_ACTIVE.name}{{{jm}}}) or vector(0)", "active")],
            instant=True,
        ),
        6,
        4,
    )
    lay.add(
        panel(
            "stat",
            "Oldest active run",
            "Age of the oldest run still active.",
            "s",
            [(f"max({JOB_ACTIVE_RUN_MAX_AGE.name}{{{jm}}}) or vector(0)", "age")],
            instant=True,
            # Red from the threshold of DatabricksJobRunStuck.
            defaults={"thresholds": thresholds((None, "green"), (stuck, "red"))},
        ),
        6,
        4,
    )
    lay.add(
        panel(
            "bargauge",
            "Failure ratio by job",
            "Failed runs over all runs in the range.",
            "percentunit",
            [
                (
                    f"sum by (workspace, job_name) (increase({failed}[$__range])) / "
                    f"sum by (workspace, job_name) (increase({runs}[$__range]))",
                    "{{job_name}}",
                )
            ],
            instant=True,
            defaults={"min": 0, "max": 1},
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Top failing jobs",
            "Jobs with the most failed runs in the range.",
            "short",
            [
                (
                    f"topk(10, sum by (workspace, job_name) (increase({failed}[$__range])) > 0)",
                    "{{job_name}}",
                )
            ],
            instant=True,
        ),
        12,
        8,
    )
    bucket = f"{JOB_RUN_DURATION.name}_bucket{{{jm}}}"
    lay.add(
        panel(
            "timeseries",
            "Run duration p50 / p95 by job",
            "From the histogram of counted runs, over a sliding 6 h window.",
            "s",
            [
                (
                    f"histogram_quantile(0.5, sum by (workspace, job_name, le) (rate({bucket}[6h])))",
                    "p50 {{job_name}}",
                ),
                (
                    f"histogram_quantile(0.95, sum by (workspace, job_name, le) (rate({bucket}[6h])))",
                    "p95 {{job_name}}",
                ),
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "Last run duration vs usual",
            "Last run's duration divided by the job's 7-day p95; above 100% is slower than usual.",
            "percentunit",
            [
                (
                    f"max by (workspace, job_name) ({JOB_LAST_RUN_DURATION.name}{{{jm}}}) / "
                    f"histogram_quantile(0.95, sum by (workspace, job_name, le) (rate({bucket}[7d])))",
                    "{{job_name}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "Active runs by state",
            "Runs not terminal yet, by life-cycle state.",
            "short",
            [
                (
                    f"sum by (workspace, life_cycle_state) ({JOB_RUNS_ACTIVE.name}{{{jm}}})",
                    "{{life_cycle_state}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Time since last success",
            "Jobs whose last success is oldest first; compare with how often each job should "
            f"run. Red from {s.thresholds.not_succeeded_hours:g} h, the threshold of "
            "DatabricksJobNotSucceededRecently.",
            "s",
            [
                (
                    f"topk(15, time() - max by (workspace, job_name) "
                    f"({JOB_LAST_SUCCESS.name}{{{jm}}}))",
                    "{{job_name}}",
                )
            ],
            instant=True,
            defaults={
                "thresholds": thresholds(
                    (None, "green"), (s.thresholds.not_succeeded_hours * 3600, "red")
                )
            },
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "table",
            "Last run per job",
            "The last terminal run of each job, with a link to its run page.",
            "none",
            [
                (
                    f"{JOB_LAST_RUN_INFO.name}{{{jm}}} * on (workspace, job_id) group_left "
                    f"{JOB_LAST_RUN_END.name}{{{jm}}}",
                    "",
                )
            ],
            instant=True,
            transformations=[
                (
                    "organize",
                    {
                        "excludeByName": {
                            "Time": True,
                            "__name__": True,
                            "instance": True,
                            "job": True,
                        },
                        "renameByName": {"Value": "ended", "run_page_url": "run page"},
                    },
                )
            ],
            overrides=[
                (
                    "run page",
                    [
                        (
                            "links",
                            [{"title": "Open run", "url": "${__value.raw}", "targetBlank": True}],
                        )
                    ],
                ),
                ("ended", [("unit", "dateTimeAsIso")]),
                (
                    "result_state",
                    [
                        ("custom.cellOptions", {"type": "color-text"}),
                        (
                            "mappings",
                            [
                                {
                                    "type": "value",
                                    "options": {
                                        result: {"color": OUTCOME_COLORS[outcome]}
                                        for result, (outcome, _) in outcomes.RESULT_STATES.items()
                                    },
                                }
                            ],
                        ),
                    ],
                ),
            ],
        ),
        24,
        10,
    )
    lay.add(
        panel(
            "timeseries",
            "Repairs",
            "Repairs of job runs by their result (a repaired run keeps its run_id and counts once "
            "as a run; its repairs count here).",
            "short",
            [
                (
                    f"sum by (workspace, job_name, result_state) "
                    f"(increase({JOB_RUN_REPAIRS.name}{{{jm}}}[$__rate_interval]))",
                    "{{job_name}} {{result_state}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "table",
            "One-time runs (runs/submit, notebook workflows) in range",
            "Runs of Airflow's DatabricksSubmitRunOperator, Azure Data Factory notebook "
            "activities and dbutils.notebook.run, by normalised run name: each submission has a "
            f"job of its own, so they are not jobs here. Failed: {FAILED_LIST}.",
            "short",
            [
                (
                    f"sum by (workspace, run_name, run_type) "
                    f"(increase({ONE_TIME_RUNS.name}{{{wm}}}[$__range]))",
                    "runs",
                ),
                (
                    f"sum by (workspace, run_name, run_type) "
                    f"(increase({ONE_TIME_RUNS.name}{{{wm},{FAILED}}}[$__range]))",
                    "failed",
                ),
            ],
            instant=True,
            transformations=merged_columns("runs", "failed"),
        ),
        12,
        8,
    )
    phases_row(lay, jm)
    promises_table(lay, wm)
    pipelines_row(lay, wm)
    return dashboard(
        "databricks-jobs",
        "Databricks jobs",
        "Runs, failures, durations and the last run of every Databricks job.",
        lay,
        s,
        with_job=True,
    )


def promises_table(lay: Layout, wm: str) -> None:
    """Each job's own promises (jobs collector) beside the time since its last success."""
    by_job = "max by (workspace, job_id, job_name)"
    # The settings' name for the runs' facts (a run's name can differ from its job's).
    # One series per job (topk by): a job renamed a minute ago has two for a while.
    named = (
        "* on (workspace, job_id) group_left (job_name) topk by (workspace, job_id) "
        f"(1, {by_job} ({JOB_INFO.name}{{{wm}}}))"
    )
    columns = [
        ("threshold", f"{by_job} ({RUN_DURATION_THRESHOLD.name}{{{wm}}})"),
        ("timeout", f"{by_job} ({TIMEOUT.name}{{{wm}}})"),
        ("schedule period", f"{by_job} ({SCHEDULE_INTERVAL.name}{{{wm}}})"),
        ("paused", f"{by_job} ({SCHEDULE_PAUSED.name}{{{wm}}})"),
        (
            "since last success",
            f"(time() - max by (workspace, job_id) ({JOB_LAST_SUCCESS.name}{{{wm}}})) {named}",
        ),
    ]
    lay.add(
        panel(
            "table",
            "Jobs' own promises",
            "What each job's settings promise (jobs collector): its RUN_DURATION_SECONDS "
            "health rule, timeout_seconds, its schedule's period and whether it is paused, "
            "beside the time since its last success (seconds). Jobs that never ran are listed "
            "too. Alerts: DatabricksJobRunOverDurationThreshold, DatabricksJobRunNearTimeout, "
            "DatabricksScheduledJobNotSucceeding.",
            "s",
            [(expr, "") for _, expr in columns],
            instant=True,
            overrides=[("paused", [("unit", "none")])],
            transformations=merged_columns(*(name for name, _ in columns)),
        ),
        24,
        9,
    )


def phases_row(lay: Layout, jm: str) -> None:
    """Where runs' time goes: each task's phases by compute, and jobs on all-purpose clusters."""
    phase = JOB_RUN_PHASE.name
    lay.add(
        panel(
            "bargauge",
            "Task time by phase and compute over the range",
            "Hours the tasks of runs that ended in the range spent queued, getting a cluster "
            "(setup), executing and cleaning up, by the compute they ran on. Tasks in parallel "
            "add up: this is compute time, not wall time.",
            "h",
            [
                (
                    f"sum by (phase, compute) (increase({phase}_sum{{{jm}}}[$__range])) / 3600",
                    "{{phase}} on {{compute}}",
                )
            ],
            instant=True,
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Setup p50 and p95 by compute",
            "How long tasks waited for their cluster, by compute: a pool's warm instances "
            "take seconds, a cluster from the cloud minutes (see the pools dashboard's 'What "
            "pools buy').",
            "s",
            [
                (
                    f"histogram_quantile({q}, sum by (compute, le) "
                    f'(increase({phase}_bucket{{{jm},phase="setup"}}[$__range])))',
                    f"p{int(q * 100)} {{{{compute}}}}",
                )
                for q in (0.5, 0.95)
            ],
            instant=True,
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "table",
            "Jobs on all-purpose clusters",
            "Runs in the range whose tasks ran on an all-purpose cluster (existing_cluster_id). "
            "Scheduled jobs belong on job clusters: all-purpose compute costs more DBUs and is "
            "shared with people (alert DatabricksScheduledJobOnAllPurposeCompute).",
            "short",
            [
                (
                    "sort_desc(sum by (workspace, job_id, job_name) (increase("
                    f'{JOB_RUNS_BY_COMPUTE.name}{{{jm},compute="all_purpose"}}[$__range])) > 0)',
                    "",
                ),
                (
                    "sum by (workspace, job_id, job_name) (increase("
                    f"{JOB_RUNS_BY_COMPUTE.name}{{{jm}}}[$__range])) and on (workspace, job_id) "
                    "(sum by (workspace, job_id) (increase("
                    f'{JOB_RUNS_BY_COMPUTE.name}{{{jm},compute="all_purpose"}}[$__range])) > 0)',
                    "",
                ),
            ],
            instant=True,
            transformations=merged_columns("runs on all-purpose", "runs (any compute)"),
        ),
        24,
        8,
    )


def pipelines_row(lay: Layout, wm: str) -> None:
    """Lakeflow (DLT) pipelines: updates by outcome, what runs, the failed ones and why."""
    lay.add(
        panel(
            "timeseries",
            "Pipeline updates by outcome",
            "Updates of Lakeflow (DLT) pipelines that ended, by state (COMPLETED, FAILED, "
            "CANCELED), each counted once.",
            "short",
            [
                (
                    f"sum by (workspace, pipeline_name, state) "
                    f"(increase({UPDATES.name}{{{wm}}}[$__rate_interval]))",
                    "{{pipeline_name}} {{state}}",
                )
            ],
        ),
        8,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "Pipeline updates running",
            "Updates on their way (created, waiting for resources, initializing, setting up "
            "tables, running, stopping).",
            "short",
            [
                (
                    f"sum by (workspace, pipeline_name) ({UPDATES_RUNNING.name}{{{wm}}})",
                    "{{pipeline_name}}",
                )
            ],
        ),
        8,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "Pipeline update duration (p90)",
            "90th percentile of ended updates' durations (from creation to the collection that "
            "saw them end: at most one interval long).",
            "s",
            [
                (
                    "histogram_quantile(0.9, sum by (workspace, pipeline_name, le) "
                    f"(rate({UPDATE_DURATION.name}_bucket{{{wm}}}[$__rate_interval])))",
                    "{{pipeline_name}}",
                )
            ],
        ),
        8,
        8,
    )
    lay.add(
        panel(
            "table",
            "Pipelines",
            "Each pipeline's state and health, whether its last ended update failed (a "
            "pipeline is IDLE after a failed update too) and how long ago that update started.",
            "short",
            [
                (
                    f"max by (workspace, pipeline_name) ({LAST_UPDATE_FAILED.name}{{{wm}}})",
                    "failed",
                ),
                (
                    f"max by (workspace, pipeline_name) (time() - {LAST_UPDATE_START.name}{{{wm}}})",
                    "age",
                ),
            ],
            instant=True,
            transformations=merged_columns("last update failed", "last update started (s ago)"),
        ),
        12,
        8,
    )
    lay.add(
        info_table(
            "Failed pipeline updates and their errors",
            "The pipelines whose last update failed, with its error from the pipeline's event "
            "log; DatabricksPipelineUpdateFailed fires for each. State and health: "
            f"{PIPELINE_INFO.name}.",
            f"{LAST_UPDATE_ERROR.name}{{{wm}}}",
        ),
        12,
        8,
    )


def pools(s: Settings) -> Dashboard:
    lay = Layout()
    wm = _matchers(s)
    counts = {key: f"{family.name}{{{wm}}}" for key, family in COUNTS.items()}
    max_capacity = f"{MAX_CAPACITY.name}{{{wm}}}"
    lay.add(
        panel(
            "timeseries",
            "Instances by pool",
            "Idle, used and pending instances.",
            "short",
            [
                (
                    f"sum by (workspace, pool_name) ({counts['idle']})",
                    "idle {{pool_name}}",
                ),
                (
                    f"sum by (workspace, pool_name) ({counts['used']})",
                    "used {{pool_name}}",
                ),
                (
                    f"sum by (workspace, pool_name) ({counts['pending_used']} + "
                    f"{counts['pending_idle']})",
                    "pending {{pool_name}}",
                ),
            ],
        ),
        24,
        9,
    )
    lay.add(
        panel(
            "timeseries",
            "Idle above min_idle (cost waste)",
            "Idle instances beyond the configured minimum: paid for, not used.",
            "short",
            [
                (
                    f"clamp_min({counts['idle']} - on (workspace, pool_id, pool_name) "
                    f"{counts['min_idle']}, 0)",
                    "{{pool_name}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Use of max capacity",
            "All instances over max_capacity; at 100% new "
            "clusters wait. Unlimited pools are not shown.",
            "percentunit",
            [
                (
                    f"({counts['used']} + {counts['idle']} + "
                    f"{counts['pending_used']} + {counts['pending_idle']}) / on "
                    f"(workspace, pool_id, pool_name) {max_capacity}",
                    "{{pool_name}}",
                )
            ],
            instant=True,
            defaults={
                "min": 0,
                "max": 1,
                "thresholds": thresholds((None, "green"), (0.8, "orange"), (1, "red")),
            },
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "Pending instances",
            "Instances starting; a lasting rise means slow cloud capacity.",
            "short",
            [
                (
                    f"sum by (workspace, pool_name) ({counts['pending_used']} + "
                    f"{counts['pending_idle']})",
                    "{{pool_name}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "Instances that failed to start",
            "status.pending_instance_errors of each pool (Azure quota or capacity): clusters "
            "that need the pool wait meanwhile.",
            "short",
            [
                (
                    f"sum by (workspace, pool_name) ({PENDING_ERRORS.name}{{{wm}}})",
                    "{{pool_name}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        info_table(
            "Latest instance start error",
            "The latest error of an instance that failed to start, as Databricks words it.",
            f"{PENDING_ERROR_INFO.name}{{{wm}}}",
        ),
        12,
        8,
    )
    lay.add(
        info_table(
            "Pools",
            "Node type and state of every pool.",
            f"{POOL_INFO.name}{{{wm}}}",
        ),
        12,
        8,
    )
    pool_cost(lay, wm, s.thresholds.idle_cost_per_day)
    pools_buy(lay, wm)
    return dashboard(
        "databricks-pools",
        "Databricks instance pools",
        "Idle, used and pending capacity of Databricks instance pools, and what idle "
        "instances cost.",
        lay,
        s,
        with_job=False,
        extra_variables=[
            _textbox("autotermination", "What-if autotermination (minutes)", "10"),
        ],
    )


def pool_cost(lay: Layout, wm: str, per_day: float) -> None:
    """Idle instance-hours and cost over the range, from the exporter's integrated counters,
    and the last 24 h's cost against the budget of DatabricksPoolIdleCostHigh."""
    seconds = {key: f"increase({family.name}{{{wm}}}[$__range])" for key, family in USAGE.items()}
    price = _price(wm)
    cost = f"increase({IDLE_COST.name}{{{wm}}}[$__range])"
    lay.add(
        panel(
            "bargauge",
            "Idle instance-hours over the range",
            "Hours of idle instances per pool (running, not used by a cluster), integrated by "
            "the exporter between collections.",
            "h",
            [(f"sum by (workspace, pool_name) ({seconds['idle']}) / 3600", "{{pool_name}}")],
            instant=True,
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Idle cost over the range",
            "VM cost of idle instances per pool, in the price table's currency. Idle instances "
            "cost the cloud provider's VM price and no DBUs. Pools without a price are listed "
            "under 'Pools without a price'.",
            "short",
            [(f"sum by (workspace, pool_name, currency) ({cost})", "{{pool_name}} ({{currency}})")],
            instant=True,
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Idle cost, last 24 h",
            f"VM cost of idle instances per pool over the last 24 hours. Red from {per_day:g} "
            "(in the price table's currency), the budget of DatabricksPoolIdleCostHigh.",
            "short",
            [
                (
                    "sum by (workspace, pool_name, currency) "
                    f"(increase({IDLE_COST.name}{{{wm}}}[24h]))",
                    "{{pool_name}} ({{currency}})",
                )
            ],
            instant=True,
            defaults={"thresholds": thresholds((None, "green"), (per_day, "red"))},
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "table",
            "Top pools by waste",
            "Idle instances beyond min_idle_instances over the range: instance-hours and their "
            "VM cost in the price table's currency. This is the part a configuration choice "
            "decides.",
            "short",
            [
                (
                    f"topk(10, sum by (workspace, pool_name) ({seconds['idle_above_min']}) / 3600)",
                    "",
                ),
                (
                    f"topk(10, sum by (workspace, pool_name) "
                    f"({seconds['idle_above_min']} / 3600{price}))",
                    "",
                ),
            ],
            instant=True,
            transformations=merged_columns("instance-hours", "cost"),
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Saved with autotermination = $autotermination min",
            "At most what a shorter idle_instance_autotermination_minutes would have saved over "
            "the range: idle-above-minimum cost x (1 - what-if / current minutes). An upper "
            "bound: it assumes instances above the minimum wait until they are terminated; "
            "instances reused sooner save less. Set the what-if value at the top.",
            "short",
            [
                (
                    f"sum by (workspace, pool_name, currency) ({seconds['idle_above_min']}"
                    f" / 3600{price} * on (workspace, pool_id, pool_name) clamp_min(1 - "
                    f"$autotermination * 60 / {AUTOTERMINATION.name}"
                    f"{{{wm}}}, 0))",
                    "{{pool_name}} ({{currency}})",
                )
            ],
            instant=True,
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Saved with min_idle_instances = 0",
            "At most what a pool without min_idle_instances would have saved over the range: "
            "the cost of idle instances kept at or below the minimum (idle - idle above min). "
            "Clusters then wait for new instances to start.",
            "short",
            [
                (
                    f"sum by (workspace, pool_name, currency) (({seconds['idle']} - "
                    f"{seconds['idle_above_min']}) / 3600{price})",
                    "{{pool_name}} ({{currency}})",
                )
            ],
            instant=True,
        ),
        12,
        8,
    )
    lay.add(
        info_table(
            "Pools without a price",
            "Pools whose node type the exporter's price table lacks: their idle cost is not "
            "counted. Add the node type under prices.node_types.",
            f"{UNPRICED.name}{{{wm}}}",
        ),
        12,
        8,
    )


def pools_buy(lay: Layout, wm: str) -> None:
    """What pools buy: start-ups from a pool against on-demand ones of the same node type,
    start-ups served, and idle cost per start-up served (README, "Run phases and compute")."""
    setup = CLUSTER_SETUP.name
    # A pool's start-ups under its node type and name (from the pool's info series).
    # One series per pool (topk by): a pool renamed a minute ago has two for a while.
    node_of = f"topk by (workspace, pool_id) (1, {POOL_INFO.name}{{{wm}}})"
    name_of = node_of
    targets = []
    for q in (0.5, 0.95):
        targets.append(
            (
                f"histogram_quantile({q}, sum by (node_type_id, le) (increase("
                f'{setup}_bucket{{{wm},compute="pool"}}[$__range]) * on (workspace, pool_id) '
                f"group_left (node_type_id) {node_of}))",
                f"pool p{int(q * 100)} {{{{node_type_id}}}}",
            )
        )
        targets.append(
            (
                f"histogram_quantile({q}, sum by (node_type_id, le) (increase("
                f'{setup}_bucket{{{wm},compute="on_demand"}}[$__range])))',
                f"on-demand p{int(q * 100)} {{{{node_type_id}}}}",
            )
        )
    lay.add(
        panel(
            "bargauge",
            "What pools buy: cluster start-up, pool vs on-demand",
            "Start-up p50 and p95 of the clusters runs used, from a pool and from the cloud, by "
            "node type (a pool's from its info). The difference is what the idle cost above "
            "buys: clusters that start in seconds instead of minutes.",
            "s",
            targets,
            instant=True,
        ),
        12,
        8,
    )
    served = (
        f'sum by (workspace, pool_id) (increase({setup}_count{{{wm},compute="pool"}}[$__range]))'
    )
    lay.add(
        panel(
            "bargauge",
            "Start-ups served per hour",
            "Clusters started from each pool per hour over the range (a job cluster once per run).",
            "short",
            [
                (
                    "3600 * sum by (workspace, pool_id) (rate("
                    f'{setup}_count{{{wm},compute="pool"}}[$__range])) * on (workspace, pool_id) '
                    f"group_left (pool_name) {name_of}",
                    "{{pool_name}}",
                )
            ],
            instant=True,
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "bargauge",
            "Idle cost per start-up served",
            "Idle VM cost over the range divided by the clusters the pool started: what one "
            "fast start-up cost. Pools that served none are not shown.",
            "short",
            [
                (
                    # By pool_id alone on the left: a pool renamed in the range is one pool.
                    f"sum by (workspace, pool_id, currency) (increase("
                    f"{IDLE_COST.name}{{{wm}}}[$__range])) / on (workspace, pool_id) "
                    f"group_left () ({served} > 0) * on (workspace, pool_id) "
                    f"group_left (pool_name) {name_of}",
                    "{{pool_name}} ({{currency}})",
                )
            ],
            instant=True,
        ),
        12,
        8,
    )


def exporter(s: Settings) -> Dashboard:
    lay = Layout()
    wm = _matchers(s)
    lay.add(
        panel(
            "stat",
            "Collection success",
            "1 when the last collection succeeded; red at 0 (DatabricksExporterCollectionFailing "
            "fires after 15 min of it).",
            "bool_yes_no",
            [(f"{COLLECTION_SUCCESS.name}{{{wm}}}", "{{workspace}} {{collector}}")],
            instant=True,
            defaults={"thresholds": thresholds((None, "red"), (1, "green"))},
        ),
        12,
        5,
    )
    lay.add(
        panel(
            "stat",
            "Data age",
            "Time since the last successful collection. Red from "
            f"{s.thresholds.data_stale_minutes:g} min, the threshold of DatabricksExporterDataStale.",
            "s",
            [
                (
                    f"time() - {LAST_SUCCESS.name}{{{wm}}}",
                    "{{workspace}} {{collector}}",
                )
            ],
            instant=True,
            defaults={
                "thresholds": thresholds(
                    (None, "green"), (s.thresholds.data_stale_minutes * 60, "red")
                )
            },
        ),
        12,
        5,
    )
    lay.add(
        panel(
            "timeseries",
            "Collection duration p95",
            "Time a collection takes, retries included.",
            "s",
            [
                (
                    f"histogram_quantile(0.95, sum by (workspace, collector, le) "
                    f"(rate({COLLECTION_DURATION.name}_bucket{{{wm}}}[$__rate_interval])))",
                    "{{workspace}} {{collector}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "API requests by status",
            "Databricks API requests per second.",
            "reqps",
            [
                (
                    f"sum by (workspace, status_code) "
                    f"(rate({API_REQUESTS.name}{{{wm}}}[$__rate_interval]))",
                    "{{workspace}} {{status_code}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "API retries by reason",
            "429 means Databricks throttles the exporter.",
            "reqps",
            [
                (
                    f"sum by (workspace, reason) "
                    f"(rate({API_RETRIES.name}{{{wm}}}[$__rate_interval]))",
                    "{{workspace}} {{reason}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "Azure AD token requests per hour",
            "About one an hour is normal: tokens are cached until shortly before expiry.",
            "short",
            [(f"increase({TOKEN_REQUESTS.name}{{{wm}}}[1h])", "{{workspace}}")],
        ),
        12,
        8,
    )
    lay.add(
        panel(
            "timeseries",
            "Exporter memory (RSS)",
            "Resident memory of the exporter processes that collect the chosen workspaces (one "
            "per shard), against the pod's limit (the chart's default: 384 MiB); the legend "
            "names each one's version (databricks_exporter_build_info).",
            "bytes",
            [
                (
                    f"process_resident_memory_bytes{{{s.selector}}} * on (instance) "
                    f"group_left (version) databricks_exporter_build_info{{{s.selector}}} "
                    f"and on (instance) count by (instance) "
                    f"(databricks_exporter_collection_success{{{wm}}})",
                    "{{instance}} {{version}}",
                )
            ],
        ),
        12,
        8,
    )
    return dashboard(
        "databricks-exporter",
        "Databricks exporter",
        "Health of the Databricks jobs exporter: collections, API traffic, tokens.",
        lay,
        s,
        with_job=False,
    )


DASHBOARDS: dict[str, Callable[[Settings], Dashboard]] = {
    "databricks-jobs.json": jobs,
    "databricks-pools.json": pools,
    "databricks-exporter.json": exporter,
}
