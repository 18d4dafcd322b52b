"""Where a run's time goes: each task's queue, setup, execution and cleanup, and the compute it
ran on (README, "Run phases and compute").

The Jobs API reports the phases per task run (``setup_duration``, ``execution_duration``,
``cleanup_duration``, ``queue_duration``, in ms); a multi-task run reports 0 for them at its own
level and its total in ``run_duration``, so the phases come from its tasks. A run listed
without tasks (an API 2.0 shape) is one "task" of its own, with its own ``cluster_spec``.

Each task is one observation of each phase, under its compute kind. Tasks that run in parallel
are not merged: a phase's sum over a run is the compute time its tasks spent in it, not wall
time. The run's queue time is the wait before its first task: it goes to the task(s) that
started first, unless the tasks report queue times of their own. Tasks that only orchestrate
(``condition_task``, ``run_job_task``, ``for_each_task``) use no compute and are left out, and
so are tasks that never ran (skipped, excluded, upstream failed: every phase 0).

A cluster start-up is one per cluster a run started: a job cluster shared by several tasks once
(its tasks' longest setup, since the tasks that came later found it running), a task's own
``new_cluster`` once per attempt, an all-purpose cluster once per task (it may be running), a
serverless task's own start once per task; a SQL warehouse's or a pipeline's task starts none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.text import valid_text

PHASES = ("queue", "setup", "execution", "cleanup")
# The compute a task ran on: a bounded set, so it is a label.
POOL = "pool"  # a new cluster (or job cluster) with instance_pool_id / driver_instance_pool_id
ON_DEMAND = "on_demand"  # a new cluster (or job cluster) from the cloud, no pool
ALL_PURPOSE = "all_purpose"  # existing_cluster_id: a long-lived, interactive cluster
SERVERLESS = "serverless"  # no cluster: serverless jobs compute (environment_key or nothing)
UNKNOWN = "unknown"  # a SQL warehouse, a pipeline's own compute, or a cluster not described
COMPUTE_KINDS = (POOL, ON_DEMAND, ALL_PURPOSE, SERVERLESS, UNKNOWN)
# Tasks that run on no compute of their own (their time is their children's).
ORCHESTRATION_TASKS = ("condition_task", "run_job_task", "for_each_task")
# Tasks that run on a SQL warehouse or a pipeline's compute, not on a jobs cluster.
OTHER_COMPUTE_TASKS = (
    "sql_task",
    "dashboard_task",
    "alert_task",
    "pipeline_task",
    "power_bi_task",
    "dbt_cloud_task",
    "dbt_platform_task",
)
# Phases and start-ups: a second to a few hours.
DURATION_FIELDS = ("queue_duration", "setup_duration", "execution_duration", "cleanup_duration")
PHASE_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
MAX_ID = 128  # characters of a pool or node type id kept; a longer one is not an id


@dataclass(frozen=True)
class TaskPhases:
    """One task run's phases (ms) and the compute it ran on."""

    compute: str
    queue_ms: int = 0
    setup_ms: int = 0
    execution_ms: int = 0
    cleanup_ms: int = 0
    cluster: str = ""  # which cluster of the run it ran on ("" : none of its own)
    pool_id: str = ""
    node_type_id: str = ""

    def seconds(self, phase: str) -> float:
        return float(getattr(self, phase + "_ms")) / 1000.0


@dataclass(frozen=True)
class StartUp:
    """One cluster a run started (or found running): how long its tasks waited for it."""

    compute: str
    pool_id: str
    node_type_id: str
    setup_seconds: float


def _ms(value: Any) -> int:
    """A duration in ms (parse_run has already refused wrong types at the run's level)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        number = int(float(value))
    except (ValueError, OverflowError):
        return 0
    return number if 0 < number < 366 * 86_400_000 else 0


def _start(task: Mapping[str, Any]) -> int:
    value = task.get("start_time")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _id(value: Any) -> str:
    text = valid_text(value) if isinstance(value, str) else ""
    return text if len(text) <= MAX_ID else ""


def cluster_compute(spec: Any) -> tuple[str, str, str]:
    """(compute, pool_id, node_type_id) of a new_cluster spec."""
    if not isinstance(spec, Mapping):
        return UNKNOWN, "", ""
    pool = _id(spec.get("instance_pool_id")) or _id(spec.get("driver_instance_pool_id"))
    if pool:
        return POOL, pool, ""
    return ON_DEMAND, "", _id(spec.get("node_type_id"))


def _job_clusters(raw_run: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    clusters = {}
    items = raw_run.get("job_clusters")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and isinstance(item.get("job_cluster_key"), str):
            clusters[item["job_cluster_key"]] = item
    return clusters


def _compute_of(
    task: Mapping[str, Any], job_clusters: Mapping[str, Mapping[str, Any]], key: str
) -> tuple[str, str, str, str]:
    """(compute, cluster, pool_id, node_type_id) of a task (or of a run without tasks)."""
    existing = _id(task.get("existing_cluster_id"))
    if existing:
        return ALL_PURPOSE, "existing:" + existing + ":" + key, "", ""
    attempt = task.get("attempt_number")
    if task.get("new_cluster") is not None:
        compute, pool, node = cluster_compute(task.get("new_cluster"))
        return compute, f"task:{key}:{attempt}", pool, node
    job_cluster_key = task.get("job_cluster_key")
    if isinstance(job_cluster_key, str) and job_cluster_key:
        cluster = job_clusters.get(job_cluster_key)
        if cluster is None:  # the run does not describe it: pool or not is not known
            return UNKNOWN, "job_cluster:" + job_cluster_key, "", ""
        if cluster.get("new_cluster") is None and (
            cluster.get("serverless_compute") is not None
            or cluster.get("serverless_compute_id") is not None
        ):
            return SERVERLESS, "", "", ""
        compute, pool, node = cluster_compute(cluster.get("new_cluster"))
        return compute, "job_cluster:" + job_cluster_key, pool, node
    if any(task.get(kind) is not None for kind in OTHER_COMPUTE_TASKS):
        return UNKNOWN, "", "", ""
    # No cluster named: serverless jobs compute (with or without an environment_key).
    return SERVERLESS, "", "", ""


def _ran(task: Mapping[str, Any]) -> bool:
    """Whether the task ran at all: one that was skipped, excluded, never started because an
    upstream task failed, or ended while still queued reports 0 for setup, execution and
    cleanup (and used no cluster)."""
    return any(_ms(task.get(key)) for key in DURATION_FIELDS[1:])


def _orchestration(task: Mapping[str, Any]) -> bool:
    return any(task.get(kind) is not None for kind in ORCHESTRATION_TASKS)


def run_phases(raw: Mapping[str, Any], queue_ms: int) -> tuple[TaskPhases, ...]:
    """Each task's phases and compute; a run without tasks is one task of its own.

    ``queue_ms``: the run's queue_duration, given to the first-started task(s) unless the
    tasks report queue times of their own.
    """
    listed = raw.get("tasks")
    tasks = [t for t in (listed if isinstance(listed, list) else ()) if isinstance(t, Mapping)]
    if not tasks:
        setup, execution, cleanup = (
            _ms(raw.get(k)) for k in ("setup_duration", "execution_duration", "cleanup_duration")
        )
        if not (setup or execution or cleanup):
            return ()  # it never ran (skipped, or ended queued), or listed without its tasks
        spec = raw.get("cluster_spec")
        compute, cluster, pool, node = UNKNOWN, "", "", ""  # no spec: nor a cluster known
        if isinstance(spec, Mapping) and spec:
            compute, cluster, pool, node = _compute_of(spec, _job_clusters(raw), "")
            cluster = cluster or "run"
        return (TaskPhases(compute, queue_ms, setup, execution, cleanup, cluster, pool, node),)
    job_clusters = _job_clusters(raw)
    working = [t for t in tasks if not _orchestration(t) and _ran(t)]
    own_queues = any(_ms(t.get("queue_duration")) for t in working)
    starts = [_start(t) for t in working if _start(t)]
    first_start = min(starts) if starts else 0
    out = []
    queue_given = False
    for task in working:
        key = valid_text(task.get("task_key")) if isinstance(task.get("task_key"), str) else ""
        compute, cluster, pool, node = _compute_of(task, job_clusters, key)
        if own_queues:
            queue = _ms(task.get("queue_duration"))
        else:
            # The run's queue, once: to the first task that started first (or the first task).
            first = _start(task) == first_start
            queue = queue_ms if not queue_given and first else 0
            queue_given = queue_given or first
        out.append(
            TaskPhases(
                compute,
                queue,
                _ms(task.get("setup_duration")),
                _ms(task.get("execution_duration")),
                _ms(task.get("cleanup_duration")),
                cluster,
                pool,
                node,
            )
        )
    return tuple(out)


def start_ups(phases: tuple[TaskPhases, ...]) -> list[StartUp]:
    """The clusters a run started: one per cluster, its tasks' longest setup (see above)."""
    clusters: dict[str, TaskPhases] = {}
    out = []
    for task in phases:
        if not task.cluster:
            if task.compute == SERVERLESS:  # serverless compute's own start, per task
                out.append(StartUp(task.compute, "", "", task.setup_ms / 1000.0))
            continue  # a SQL warehouse's or a pipeline's task: no cluster of the run
        known = clusters.get(task.cluster)
        if known is None or task.setup_ms > known.setup_ms:
            clusters[task.cluster] = task
    out.extend(
        StartUp(t.compute, t.pool_id, t.node_type_id, t.setup_ms / 1000.0)
        for t in clusters.values()
    )
    return out


def compute_kinds(phases: tuple[TaskPhases, ...]) -> tuple[str, ...]:
    """The compute kinds a run's tasks ran on, each once, in COMPUTE_KINDS order."""
    used = {task.compute for task in phases}
    return tuple(kind for kind in COMPUTE_KINDS if kind in used)
