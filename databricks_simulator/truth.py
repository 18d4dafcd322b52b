"""Ground truth: what the exporter must report for a simulated workspace, from the world's
own functions (a mixin of SimWorkspace; the pipelines' truth is SimPipelines.truth)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from databricks_simulator.wire import OUTCOME_WIRE

PHASES = ("queue", "setup", "execution", "cleanup")

if TYPE_CHECKING:
    from databricks_simulator.world import SimClock, SimConfig, SimJob, SimRun


class GroundTruth:
    """Counts over the world's runs and pools (SimWorkspace inherits them, with what it
    reads: the world's parts, declared here for the type checker)."""

    if TYPE_CHECKING:
        config: SimConfig
        clock: SimClock
        jobs: list[SimJob]
        deleted_jobs: dict[int, int]
        deleted_pools: set[str]
        max_duration_ms: int

        def _last_k(self, job: SimJob, now: int) -> int: ...
        def _k_at_or_after(self, job: SimJob, start_ms: int) -> int: ...
        def run(self, job: SimJob, k: int) -> SimRun: ...
        def task_results(self, run: SimRun, now: int | None = None) -> list[tuple[str, str]]: ...
        def pool_state(self, p: int, step: int) -> tuple[int, int, int, int]: ...
        def task_phases(self, run: SimRun, now: int) -> list[tuple[str, int, int, int]]: ...
        def task_compute(self, job: SimJob, i: int) -> str: ...
        def _cluster_of(self, job: SimJob, i: int) -> dict[str, Any]: ...

    def pool_truth(self, from_ms: int, to_ms: int) -> dict[str, dict[str, float]]:
        """Instance-seconds per pool in [from_ms, to_ms): what the exporter's counters integrate."""
        step_ms = int(self.config.pool_step_seconds * 1000)
        out: dict[str, dict[str, float]] = {}
        for p in range(self.config.pools):
            pool_id = f"0101-120000-pool{p:02d}"
            if pool_id in self.deleted_pools:
                continue
            sums = dict.fromkeys(("idle", "used", "pending", "idle_above_min"), 0.0)
            t = from_ms
            while t < to_ms:
                step = t // step_ms
                end = min(to_ms, (step + 1) * step_ms)
                seconds = (end - t) / 1000.0
                used, idle, pending_used, pending_idle = self.pool_state(p, step)
                sums["idle"] += idle * seconds
                sums["used"] += used * seconds
                sums["pending"] += (pending_used + pending_idle) * seconds
                sums["idle_above_min"] += max(idle - p % 3, 0) * seconds
                t = end
            out[pool_id] = sums
        return out

    def truth(self, after_ms: int, until_ms: int | None = None) -> dict[str, Any]:
        """Counts the exporter must report: runs that ended in (after_ms, until_ms].

        Runs of deleted jobs are left out (the exporter may have counted some before the job
        went); repairs are counted apart, by the end of the repair; one-time runs by their
        normalised run name.
        """
        until = self.clock.now_ms() if until_ms is None else until_ms
        runs: Counter[tuple[str, str, str]] = Counter()
        tasks: Counter[tuple[str, str, str, str]] = Counter()
        repairs: Counter[tuple[str, str, str]] = Counter()
        one_time: Counter[tuple[str, str, str]] = Counter()
        for job in self.jobs:
            if job.index in self.deleted_jobs:
                continue
            k_lo = self._k_at_or_after(job, after_ms - self.max_duration_ms)
            k_hi = self._last_k(job, until)
            for k in range(k_lo, k_hi + 1):
                run = self.run(job, k)
                if after_ms < run.repair_end_ms <= until:
                    repairs[(str(job.job_id), job.name, "SUCCESS")] += 1
                if not after_ms < run.end_ms <= until:
                    continue
                if job.kind in ("submit", "workflow"):
                    one_time[(run.normalised_name, run.run_type, run.label)] += 1
                    continue
                runs[(str(job.job_id), job.name, run.label)] += 1
                for key, result in self.task_results(run):
                    label = OUTCOME_WIRE[result][4] if run.status_only else result
                    tasks[(str(job.job_id), job.name, key, label)] += 1
        return {
            "until_ms": until,
            "total": sum(runs.values()),
            "runs": [
                {"job_id": a, "job_name": b, "result_state": c, "count": n}
                for (a, b, c), n in sorted(runs.items())
            ],
            "tasks": [
                {"job_id": a, "job_name": b, "task_key": c, "result_state": d, "count": n}
                for (a, b, c, d), n in sorted(tasks.items())
            ],
            "repairs": [
                {"job_id": a, "job_name": b, "result_state": c, "count": n}
                for (a, b, c), n in sorted(repairs.items())
            ],
            "one_time": [
                {"run_name": a, "run_type": b, "result_state": c, "count": n}
                for (a, b, c), n in sorted(one_time.items())
            ],
        }

    def phase_truth(self, after_ms: int, until_ms: int) -> dict[str, Any]:
        """What the phase families must hold for the runs that ended in (after_ms, until_ms]
        (seen ended before any repair): per (job_id or run_name, phase, compute) the seconds
        and the tasks; per (compute, pool_id, node_type_id) the start-ups and their seconds;
        per (job_id, compute) the runs; per run_id its seconds by phase."""
        phases: Counter[tuple[str, str, str]] = Counter()
        tasks: Counter[tuple[str, str]] = Counter()
        start_ups: Counter[tuple[str, str, str]] = Counter()
        start_up_ms: Counter[tuple[str, str, str]] = Counter()
        by_compute: Counter[tuple[str, str]] = Counter()
        runs: dict[str, dict[str, float]] = {}
        for job in self.jobs:
            if job.index in self.deleted_jobs:
                continue
            one_time = job.kind in ("submit", "workflow")
            k_lo = self._k_at_or_after(job, after_ms - self.max_duration_ms)
            for k in range(k_lo, self._last_k(job, until_ms) + 1):
                run = self.run(job, k)
                if not after_ms < run.end_ms <= until_ms:
                    continue
                owner = run.normalised_name if one_time else str(job.job_id)
                listed = {key for key, _ in self.task_results(run)}
                per_run = runs.setdefault(str(run.run_id), dict.fromkeys(PHASES, 0.0))
                shared: dict[tuple[str, str, str], int] = {}
                used: set[str] = set()
                first = True
                for i, (compute, setup, execution, cleanup) in enumerate(
                    self.task_phases(run, run.end_ms)
                ):
                    cluster = self._cluster_of(job, i)
                    if job.tasks[i] not in listed:
                        if len(job.tasks) > 1:
                            continue  # not listed, and the run reports no phases of its own
                        if not cluster:
                            compute = "unknown"  # its cluster_spec does not say
                    if not (setup or execution or cleanup):
                        continue  # it never ran (upstream failed): no phases, no compute
                    queue = run.queue_ms if first else 0
                    first = False
                    for phase, ms in zip(PHASES, (queue, setup, execution, cleanup), strict=True):
                        phases[(owner, phase, compute)] += ms
                        per_run[phase] += ms / 1000.0
                    tasks[(owner, compute)] += 1
                    used.add(compute)
                    pool = f"0101-120000-pool{job.pool:02d}" if compute == "pool" else ""
                    node = job.node_type if compute == "on_demand" else ""
                    if compute == "unknown" and not cluster:
                        continue  # a SQL warehouse's task: no cluster of the run
                    if "job_cluster_key" in cluster:  # one start-up: its longest setup
                        shared[(compute, pool, node)] = max(
                            setup, shared.get((compute, pool, node), 0)
                        )
                    else:
                        start_ups[(compute, pool, node)] += 1
                        start_up_ms[(compute, pool, node)] += setup
                for key, setup in shared.items():
                    start_ups[key] += 1
                    start_up_ms[key] += setup
                if not one_time:
                    for compute in used:
                        by_compute[(owner, compute)] += 1
        return {
            "phase_seconds": {k: v / 1000.0 for k, v in phases.items()},
            "tasks": dict(tasks),
            "start_ups": dict(start_ups),
            "start_up_seconds": {k: v / 1000.0 for k, v in start_up_ms.items()},
            "runs_by_compute": dict(by_compute),
            "runs": runs,
        }
