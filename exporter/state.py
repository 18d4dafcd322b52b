"""The runs ledger: counting rules, watermark, last-run facts, and the snapshot the metrics render.

Counting rules (CONTRACT.md): a run is counted exactly once, when first seen terminal, if its
end time is after the baseline. Runs that ended before the baseline only fill the last-run
facts. The ledger is plain data; the collector feeds it parsed runs after a successful fetch,
so a failed collection changes nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.health import Histogram

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
ACTIVE_STATES = frozenset(
    {"QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY", "WAITING"}
)
FAILED_RESULTS = frozenset(
    {"FAILED", "TIMEDOUT", "UPSTREAM_FAILED", "MAXIMUM_CONCURRENT_RUNS_REACHED"}
)
SUCCESS_RESULTS = frozenset({"SUCCESS"})
NO_RESULT = "NONE"
OTHER_JOB = "__other__"  # where jobs beyond the max_jobs cap are folded
# Batch jobs: half a minute to a day.
RUN_DURATION_BUCKETS = (
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    43200.0,
    86400.0,
)

JobKey = tuple[str, str]  # (job_id, job_name)


@dataclass(frozen=True)
class TaskResult:
    task_key: str
    result_state: str


@dataclass(frozen=True)
class Run:
    """The fields of a Jobs API run that the exporter uses, normalised."""

    run_id: int | str
    job_id: str
    job_name: str
    life_cycle_state: str
    result_state: str
    start_ms: int
    end_ms: int
    duration_seconds: float
    run_page_url: str
    tasks: tuple[TaskResult, ...] = ()

    @property
    def terminal(self) -> bool:
        if self.life_cycle_state in TERMINAL_STATES:
            return True
        # An unknown life-cycle state with an end time is over, whatever the API calls it.
        return self.life_cycle_state not in ACTIVE_STATES and self.end_ms > 0

    @property
    def failed(self) -> bool:
        return self.result_state in FAILED_RESULTS or self.life_cycle_state == "INTERNAL_ERROR"

    @property
    def job(self) -> JobKey:
        return (self.job_id, self.job_name)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _obj(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def run_duration_seconds(raw: Mapping[str, Any], start_ms: int, end_ms: int) -> float:
    """run_duration, else setup+execution+cleanup, else end-start (all ms in the API)."""
    total = _int(raw.get("run_duration"))
    if total <= 0:
        total = sum(
            _int(raw.get(k)) for k in ("setup_duration", "execution_duration", "cleanup_duration")
        )
    if total <= 0 and end_ms > 0 and start_ms > 0:
        total = end_ms - start_ms
    return max(total, 0) / 1000.0


def parse_run(raw: Mapping[str, Any], observed_ms: int) -> Run | None:
    """A Run from an API object, or None when it has no run_id (it cannot be deduplicated)."""
    run_id = raw.get("run_id")
    if run_id is None or isinstance(run_id, bool | dict | list):
        return None
    state = _obj(raw, "state")
    status = _obj(raw, "status")
    life_cycle = _str(state.get("life_cycle_state") or status.get("state")) or "UNKNOWN"
    result = _str(state.get("result_state")) or NO_RESULT
    start_ms = _int(raw.get("start_time"))
    end_ms = _int(raw.get("end_time"))
    duration = run_duration_seconds(raw, start_ms, end_ms)
    if end_ms <= 0 and (life_cycle in TERMINAL_STATES):
        # The API sometimes reports a finished run with end_time 0: use what we know.
        end_ms = start_ms + int(duration * 1000) if duration > 0 and start_ms > 0 else observed_ms
    tasks = tuple(
        TaskResult(
            _str(t.get("task_key")),
            _str(_obj(t, "state").get("result_state")) or NO_RESULT,
        )
        for t in (raw.get("tasks") or [])
        if isinstance(t, dict)
    )
    return Run(
        run_id=run_id,
        job_id=_str(raw.get("job_id")),
        job_name=_str(raw.get("run_name")),
        life_cycle_state=life_cycle,
        result_state=result,
        start_ms=start_ms,
        end_ms=end_ms,
        duration_seconds=duration,
        run_page_url=_str(raw.get("run_page_url")),
        tasks=tasks,
    )


@dataclass(frozen=True)
class RunsSnapshot:
    """Everything the metrics module renders for one workspace's jobs; never mutated."""

    runs_total: Mapping[tuple[str, str, str], int]
    tasks_total: Mapping[tuple[str, str, str, str], int]
    durations: Mapping[JobKey, Histogram]
    last_runs: Mapping[str, Run]
    last_success_ms: Mapping[str, int]
    active: tuple[Run, ...]
    baseline_ms: int
    watermark_ms: int = field(compare=False)  # not rendered: a moved watermark alone is no change
    folded_jobs: int = 0


@dataclass
class RunLedger:
    """Exactly-once accounting of terminal runs, with a watermark that bounds memory and cost."""

    baseline_ms: int
    watermark_ms: int
    overlap_ms: int = 300_000
    seen: dict[int | str, int] = field(default_factory=dict)  # run_id -> start_ms
    active: dict[int | str, Run] = field(default_factory=dict)
    runs_total: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    tasks_total: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    durations: dict[JobKey, Histogram] = field(default_factory=dict)
    last_runs: dict[str, Run] = field(default_factory=dict)
    last_success_ms: dict[str, int] = field(default_factory=dict)
    max_jobs: int = 5000
    known_jobs: set[str] = field(default_factory=set)
    folded: set[str] = field(default_factory=set)

    @classmethod
    def starting_at(cls, now_ms: int, lookback_ms: int, overlap_ms: int) -> RunLedger:
        """A fresh ledger: baseline now, first listing reaching back over the look-back."""
        return cls(baseline_ms=now_ms, watermark_ms=now_ms - lookback_ms, overlap_ms=overlap_ms)

    @property
    def list_from_ms(self) -> int:
        """start_time_from for the completed-runs listing of the next cycle."""
        return self.watermark_ms - self.overlap_ms

    def apply(
        self,
        cycle_start_ms: int,
        active: Iterable[Run],
        terminal: Iterable[Run],
        vanished: Iterable[int | str] = (),
    ) -> int:
        """Fold one cycle's observations in; return how many runs were newly counted."""
        counted = 0
        for run in map(self._capped, terminal):
            counted += self._observe_terminal(run)
        still_active: dict[int | str, Run] = {}
        for run in map(self._capped, active):
            if run.run_id not in self.seen or run.run_id in self.active:
                still_active[run.run_id] = run
        for run_id in vanished:
            if self.active.pop(run_id, None) is not None:
                log.info("run %s vanished before it was seen terminal; not counted", run_id)
        self.active = still_active
        self.watermark_ms = max(self.watermark_ms, cycle_start_ms)
        self._prune()
        return counted

    def _capped(self, run: Run) -> Run:
        """The run, or the run relabelled as OTHER_JOB when its job is beyond the job cap."""
        if run.job_id in self.known_jobs:
            return run
        if len(self.known_jobs) < self.max_jobs:
            self.known_jobs.add(run.job_id)
            return run
        if run.job_id not in self.folded:
            if not self.folded:
                log.warning(
                    "more than %d distinct jobs: further jobs are reported as job_id=%r "
                    "(raise max_jobs to see them; see databricks_exporter_jobs_folded)",
                    self.max_jobs,
                    OTHER_JOB,
                )
            self.folded.add(run.job_id)
        return replace(run, job_id=OTHER_JOB, job_name=OTHER_JOB)

    def _observe_terminal(self, run: Run) -> int:
        self.active.pop(run.run_id, None)
        if run.run_id in self.seen:
            return 0
        self.seen[run.run_id] = run.start_ms
        self._update_last_run(run)
        if run.end_ms <= self.baseline_ms:
            return 0
        self.runs_total[(run.job_id, run.job_name, run.result_state)] += 1
        for task in run.tasks:
            self.tasks_total[(run.job_id, run.job_name, task.task_key, task.result_state)] += 1
        hist = self.durations.get(run.job)
        if hist is None:
            hist = self.durations[run.job] = Histogram(RUN_DURATION_BUCKETS)
        hist.observe(run.duration_seconds)
        return 1

    def _update_last_run(self, run: Run) -> None:
        last = self.last_runs.get(run.job_id)
        if last is None or run.end_ms >= last.end_ms:
            self.last_runs[run.job_id] = run
        if run.result_state in SUCCESS_RESULTS:
            self.last_success_ms[run.job_id] = max(
                self.last_success_ms.get(run.job_id, 0), run.end_ms
            )

    def _prune(self) -> None:
        # A run that started before the next listing's start_time_from can only come back
        # through the active list or runs/get, and those paths check `active` first.
        horizon = self.list_from_ms
        stale = [run_id for run_id, start in self.seen.items() if start < horizon]
        for run_id in stale:
            del self.seen[run_id]

    def snapshot(self) -> RunsSnapshot:
        # Run and TaskResult are frozen; copying the containers is enough.
        return RunsSnapshot(
            runs_total=dict(self.runs_total),
            tasks_total=dict(self.tasks_total),
            durations={k: h.copy() for k, h in self.durations.items()},
            last_runs=dict(self.last_runs),
            last_success_ms=dict(self.last_success_ms),
            active=tuple(self.active.values()),
            baseline_ms=self.baseline_ms,
            watermark_ms=self.watermark_ms,
            folded_jobs=len(self.folded),
        )
