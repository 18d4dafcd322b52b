"""The runs ledger: counting rules, watermark, last-run facts, and the snapshot the metrics render.

Counting rules (README, "Counting rules"): a run is counted exactly once, when first seen
terminal, if its end time is after the baseline. Runs that ended before the baseline only fill
the last-run facts. A repair keeps the run_id: it is counted in repairs_total, never as a second
run, and moves the last-run facts to the repaired outcome. One-time runs (runs/submit) are
counted by their normalised run name, never by their ephemeral job_id.

What the ledger is told (``LedgerPolicy``: overlap, caps, name patterns) is a frozen value
passed in; what it remembers is what the state file keeps. The ledger is plain data; the
collector feeds it parsed runs after a successful fetch, so a failed collection changes nothing.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.client import RUNS_PER_PAGE
from exporter.collectors.runs.model import (
    OTHER_JOB,
    RUN_DURATION_BUCKETS,
    Attempt,
    JobKey,
    OneTimeKey,
    Run,
)
from exporter.collectors.runs.phases import PHASE_BUCKETS, PHASES, compute_kinds, start_ups
from exporter.health import Histogram
from exporter.outcomes import SUCCEEDED, outcome

log = logging.getLogger(__name__)

# Parts of one-time run names that change per run (ADF pipeline run ids, Airflow logical dates,
# epoch stamps): each match becomes "*", so runs of one Airflow task or ADF activity share series.
DEFAULT_RUN_NAME_PATTERNS = (
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    r"\d{4}-\d{2}-\d{2}(?:[T _]\d{2}[:_-]?\d{2}(?:[:_-]?\d{2})?(?:\.\d+)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?",
    r"\d{6,}",
)
MAX_ONE_TIME_NAMES = 1000
# Series a workspace may add, estimated when a new job, task key or one-time name first shows
# up (a job: its counters by result, 16 histogram series, last-run gauges; a task key: its
# results); past max_series new ones fold into "__other__", so API data cannot blow up memory.
MAX_SERIES = 250_000
# How far back a completed-runs listing may reach for runs that left the active list (and so how
# long `seen` remembers counted runs); older ones are asked for with runs/get.
REACH_BACK_MS = 30 * 60 * 1000
# After a time nobody watched (a restart, a failed cycle) the completed listing reaches back at
# least this far: a run repaired and finished meanwhile is only seen again by re-listing it.
AFTER_GAP_MS = 5 * 60 * 1000
MAX_PENDING_MS = 6 * 3600 * 1000  # a cut listing not read within 6 hours is given up
OWED_MS = 3600 * 1000  # a run owed its runs/get for an hour is counted as listed (owe_details)
SERIES_PER_JOB = 40
SERIES_PER_TASK_KEY = 3
SERIES_PER_ONE_TIME_NAME = 24
# A (job or one-time name, compute kind) pair's phase histograms: 4 phases, buckets, sum, count.
SERIES_PER_PHASE_SET = len(PHASES) * (len(PHASE_BUCKETS) + 3)
# Distinct (compute, pool_id, node_type_id) start-up histograms; beyond, "__other__".
MAX_START_UP_KEYS = 500
SERIES_PER_START_UP = len(PHASE_BUCKETS) + 3
MAX_FOLDED_KEPT = 100_000  # folded keys remembered (for their gauges and the state file)
PhaseKey = tuple[str, str, str, str]  # (job_id or run_name, job_name or run_type, phase, compute)
StartUpKey = tuple[str, str, str]  # (compute, pool_id, node_type_id)


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
    repairs_total: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    one_time_total: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    one_time_durations: Mapping[OneTimeKey, Histogram] = field(default_factory=dict)
    folded_one_time_names: int = 0
    vanished_runs: int = 0
    skipped_runs: Mapping[str, int] = field(default_factory=dict)
    folded_task_keys: int = 0
    backfill_progress: float = 1.0
    phases: Mapping[PhaseKey, Histogram] = field(default_factory=dict)
    one_time_phases: Mapping[PhaseKey, Histogram] = field(default_factory=dict)
    runs_by_compute: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    start_ups: Mapping[StartUpKey, Histogram] = field(default_factory=dict)
    folded_phase_sets: int = 0
    lookback_start_ms: int = 0


def _compiled(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


@dataclass(frozen=True)
class LedgerPolicy:
    """What the ledger is told (from the settings), never persisted: a restored ledger is
    given the running process's policy."""

    overlap_ms: int = 300_000
    max_jobs: int = 5000
    max_one_time_names: int = MAX_ONE_TIME_NAMES
    max_series: int = MAX_SERIES
    extra_run_name_patterns: tuple[str, ...] = ()  # beside DEFAULT_RUN_NAME_PATTERNS
    run_name_patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = _compiled([*DEFAULT_RUN_NAME_PATTERNS, *self.extra_run_name_patterns])
        object.__setattr__(self, "run_name_patterns", patterns)


@dataclass
class RunLedger:
    """Exactly-once accounting of terminal runs, with a watermark that bounds memory and cost."""

    baseline_ms: int
    watermark_ms: int
    policy: LedgerPolicy = field(default_factory=LedgerPolicy)
    # run_id -> (start_ms, end_ms as the API reported it, 0 if it did not)
    seen: dict[int | str, tuple[int, int]] = field(default_factory=dict)
    active: dict[int | str, Run] = field(default_factory=dict)
    runs_total: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    tasks_total: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    durations: dict[JobKey, Histogram] = field(default_factory=dict)
    last_runs: dict[str, Run] = field(default_factory=dict)
    last_success_ms: dict[str, int] = field(default_factory=dict)
    repairs_total: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    one_time_total: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    one_time_durations: dict[OneTimeKey, Histogram] = field(default_factory=dict)
    vanished_runs: int = 0
    skipped_runs: Counter[str] = field(default_factory=Counter)  # reason -> runs not trusted
    known_jobs: set[str] = field(default_factory=set)
    folded: set[str] = field(default_factory=set)
    known_one_time_names: set[str] = field(default_factory=set)
    folded_one_time_names: set[str] = field(default_factory=set)
    known_task_keys: set[tuple[str, str]] = field(default_factory=set)  # (job_id, task_key)
    folded_task_keys: set[tuple[str, str]] = field(default_factory=set)
    # Where runs' time goes (exporter.collectors.runs.phases), observed when a run is counted.
    phases: dict[PhaseKey, Histogram] = field(default_factory=dict)
    one_time_phases: dict[PhaseKey, Histogram] = field(default_factory=dict)
    runs_by_compute: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    start_ups: dict[StartUpKey, Histogram] = field(default_factory=dict)
    # (one_time, job_id or run_name, compute) pairs with phase histograms of their own.
    known_phase_sets: set[tuple[bool, str, str]] = field(default_factory=set)
    folded_phase_sets: set[tuple[bool, str, str]] = field(default_factory=set)
    folded_start_ups: set[StartUpKey] = field(default_factory=set)
    fresh: bool = True  # no cycle applied yet (a restored ledger is not fresh)
    # The history read in the background for the last-run facts (never counted): runs that
    # started in [backfill_from_ms, backfill_to_ms] are still to be read, newest first.
    # backfill_to_ms None: nothing left (or a ledger restored from a file without it).
    backfill_from_ms: int = 0
    backfill_to_ms: int | None = None
    # Completed-runs listings that were cut (past max_pages, a page that failed) and are still
    # to be read, a page budget a cycle, newest first: (start_time_from, start_time_to, the
    # watermark when it was cut). Runs counted from one are counted as in the cycle it was cut.
    pending: list[tuple[int, int, int]] = field(default_factory=list)

    @classmethod
    def starting_at(cls, now_ms: int, lookback_ms: int, policy: LedgerPolicy) -> RunLedger:
        """A fresh ledger: baseline now. Its first cycle lists what is active and what started
        in the overlap before the baseline, like any cycle, so it is ready at once whatever
        the look-back; the look-back is read afterwards (``backfill_window``)."""
        return cls(
            baseline_ms=now_ms,
            watermark_ms=now_ms,
            policy=policy,
            backfill_from_ms=now_ms - lookback_ms,
            backfill_to_ms=(
                now_ms - policy.overlap_ms if lookback_ms > policy.overlap_ms else None
            ),
        )

    def rebase(self, now_ms: int) -> None:
        """Move a fresh ledger's baseline to ``now_ms`` (the first cycle's time on Databricks'
        clock), keeping its look-back: a baseline from the exporter's own clock, minutes ahead
        of Databricks', would leave the runs of those minutes uncounted."""
        if self.fresh:
            shift = now_ms - self.baseline_ms
            self.baseline_ms, self.watermark_ms = now_ms, now_ms
            self.backfill_from_ms += shift
            if self.backfill_to_ms is not None:
                self.backfill_to_ms += shift

    def backfill_window(self) -> tuple[int, int] | None:
        """(start_time_from, start_time_to) of the history still to read, or None when done."""
        if self.fresh or self.backfill_to_ms is None:
            return None
        return self.backfill_from_ms, self.backfill_to_ms

    @property
    def backfill_progress(self) -> float:
        """How much of the look-back has been read, 0 to 1 (1 when done or none asked)."""
        if self.backfill_to_ms is None:
            return 1.0
        total = self.baseline_ms - self.overlap_ms - self.backfill_from_ms
        left = self.backfill_to_ms - self.backfill_from_ms
        return 1.0 if total <= 0 else min(max(1.0 - left / total, 0.0), 1.0)

    def apply_history(self, runs: Iterable[Run], read_to_ms: int | None) -> None:
        """Fold a page of the history in: last-run facts only, never a count (runs that ended
        after the baseline are counted by the cycles, which track them from the active list).
        ``read_to_ms``: the history is read down to this start time; None: all of it."""
        for run in runs:
            if run.terminal:
                self._update_last_run(self._keyed(run))
        if read_to_ms is None or read_to_ms <= self.backfill_from_ms:
            self.backfill_to_ms = None
        elif self.backfill_to_ms is not None:
            self.backfill_to_ms = min(self.backfill_to_ms, read_to_ms)

    @property
    def overlap_ms(self) -> int:
        return self.policy.overlap_ms

    @property
    def list_from_ms(self) -> int:
        """The latest start_time_from of a completed-runs listing: the overlap before the last
        cycle's start covers runs that appear in listings late."""
        return self.watermark_ms - self.overlap_ms

    @property
    def horizon_ms(self) -> int:
        """How far back ``seen`` remembers counted runs, so a listing may reach back this far
        (and as far as a listing still to be read, so its runs are never counted twice)."""
        horizon = self.watermark_ms - max(self.overlap_ms, REACH_BACK_MS)
        return min([horizon, *(start for start, _, _ in self.pending)])

    def tag_uncounted(self, run: Run) -> Run:
        """An active run never counted that started inside a listing still to be read: its
        original attempt may have ended there, uncounted (see ``uncounted_since``). Called
        before the pending listings move on, since reading one removes it."""
        if run.run_id in self.seen or run.uncounted_since:
            return run
        for from_ms, to_ms, since in self.pending:
            if from_ms <= run.start_ms <= to_ms:
                return replace(run, uncounted_since=since)
        return run

    def defer(self, from_ms: int, to_ms: int, since_ms: int) -> None:
        """A completed-runs listing of the cycle after ``since_ms`` was cut after reading the
        runs that started down to ``to_ms``: the rest, [from_ms, to_ms], is read later.

        Windows that overlap or touch are merged (a listing that keeps failing at one page
        makes one growing window, not one per cycle), with the earlier ``since``; a window
        older than MAX_PENDING_MS is given up with a warning, so ``seen`` (kept back to the
        oldest window) stays bounded."""
        if to_ms < from_ms:
            return
        window = (from_ms, to_ms, since_ms)
        kept = []
        for other in self.pending:
            if other[0] <= window[1] + 1 and window[0] <= other[1] + 1:
                window = (
                    min(window[0], other[0]),
                    max(window[1], other[1]),
                    min(window[2], other[2]),
                )
            else:
                kept.append(other)
        self.pending = sorted([window, *kept], key=lambda w: w[1], reverse=True)
        oldest_allowed = self.watermark_ms - MAX_PENDING_MS
        kept = []
        for start, end, since in self.pending:
            if start < oldest_allowed:
                log.warning(
                    "the runs that started from %d to %d could not be listed for %d hours; "
                    "given up (those runs are not counted)",
                    start,
                    min(end, oldest_allowed),
                    MAX_PENDING_MS // 3_600_000,
                )
            if end >= oldest_allowed:
                kept.append((max(start, oldest_allowed), end, since))
        self.pending = kept

    def pending_done(self, window: tuple[int, int, int], read_to_ms: int | None) -> None:
        """A pending listing was read down to ``read_to_ms`` (None: to its end)."""
        if window not in self.pending:
            return
        i = self.pending.index(window)
        if read_to_ms is None or read_to_ms < window[0]:
            del self.pending[i]
        else:
            self.pending[i] = (window[0], min(window[1], read_to_ms), window[2])

    def completed_list_from(self, left_active: Iterable[int], after_gap: bool = False) -> int:
        """start_time_from for this cycle's completed-runs listing, at the lowest cost.

        ``left_active`` are the start times of runs seen active that left the active list. One
        that started before ``list_from_ms`` is found either by reaching the listing back to its
        start (re-reading the runs counted since, 25 a page) or by one runs/get; this picks the
        start that needs the fewest requests, estimated from the runs ``seen`` remembers.
        ``after_gap``: nobody watched since the last cycle (restart, failed cycle), so the
        listing reaches back at least AFTER_GAP_MS, for runs repaired and ended meanwhile.
        """
        latest = self.list_from_ms
        if after_gap:
            latest = min(latest, self.watermark_ms - AFTER_GAP_MS)
        older = sorted((s for s in left_active if self.horizon_ms <= s < latest), reverse=True)
        if not older or self.fresh:
            return latest
        starts = sorted(start for start, _ in self.seen.values())
        best, best_cost = latest, float(len(older))  # reach nothing back: runs/get for each
        for i, start in enumerate(older):
            relisted = bisect.bisect_left(starts, latest) - bisect.bisect_left(starts, start)
            cost = (relisted + i + 1) / RUNS_PER_PAGE + len(older) - i - 1
            if cost < best_cost:
                best, best_cost = start, cost
        return best

    def needs_details(self, run: Run) -> bool:
        """Whether a terminal run about to be counted needs runs/get: its listing cut the tasks
        at 100, or it began before the exporter watched it (started before the baseline, or
        running at the first cycle) and its times show a pause: it may be a repair of a run
        that failed before the baseline, and only the repair history tells. Whichever listing
        of the first cycle it slipped between (a repair starting or ending between the active
        and the completed listing), its start time gives it away."""
        if run.run_id in self.seen or run.end_ms <= self.baseline_ms or run.repairs:
            return False
        tracked = self.active.get(run.run_id)
        unwatched = run.start_ms < self.baseline_ms or (
            tracked is not None and (tracked.inherited or tracked.uncounted_since > 0)
        )
        return run.more_tasks or (unwatched and run.paused)

    def owe_details(self, run: Run, watermark_before: int | None = None) -> Run:
        """A terminal run that needs runs/get (``needs_details``) when runs/get failed: it is
        not counted with what its listing lacks (tasks past 100, the repair history) but kept
        among the active runs, uncounted, and asked for again next cycle (by its listing or by
        runs/get, as a run that left the active listing is). ``watermark_before``: what it would
        have been counted against now (the watermark, or a pending listing's), kept as its
        ``uncounted_since``, so a repair that ends meanwhile is not taken for the repair of a
        run counted long ago. The snapshot leaves it out of the runs in flight; its job's
        last-run facts move at once (``apply``), so a failure alerts without waiting."""
        tracked = self.active.get(run.run_id)
        if not run.end_reported and tracked is not None and tracked.terminal:
            # No end_time: inferred as each cycle's time. The first one stays, so the owed run
            # never passes for a later run of its job, nor owes for ever.
            run = replace(run, end_ms=tracked.end_ms)
        since = self._counted_by(
            tracked, self.watermark_ms if watermark_before is None else watermark_before
        )
        return replace(run, uncounted_since=since)

    def _counted_by(self, tracked: Run | None, watermark_before: int) -> int:
        """Until when a run about to be counted would have been counted already, had it ended
        then: the last cycle's watermark, or (an uncounted run) its ``uncounted_since``; never
        before the baseline."""
        counted_by = max(watermark_before, self.baseline_ms)
        if tracked is not None and tracked.uncounted_since:
            counted_by = max(min(counted_by, tracked.uncounted_since), self.baseline_ms)
        return counted_by

    def owed_too_long(self, run: Run, now_ms: int) -> bool:
        """Whether a run owed its details ended over OWED_MS ago: given up, counted as listed."""
        return run.terminal and run.end_ms > 0 and now_ms - run.end_ms > OWED_MS

    def apply(
        self,
        cycle_start_ms: int,
        active: Iterable[Run],
        terminal: Iterable[Run],
        vanished: Iterable[int | str] = (),
        backlog: Iterable[tuple[Run, int]] = (),
    ) -> int:
        """Fold one cycle's observations in; return how many runs were newly counted.

        ``backlog``: terminal runs of a pending listing, each with the watermark of the cycle
        that listing belongs to."""
        counted = 0
        watermark_before = self.watermark_ms
        for run, since in backlog:
            counted += self._observe_terminal(self._keyed(run), since)
        for run in map(self._keyed, terminal):
            counted += self._observe_terminal(run, watermark_before)
        still_active: dict[int | str, Run] = {}
        for run in map(self._keyed, active):
            if run.terminal:
                if run.run_id in self.seen:
                    continue  # owed, but a copy of it (a pending listing's) was counted now
                self._update_last_run(run)  # owed its details: counted later, known now
            tracked = self.active.get(run.run_id, run)
            if run.run_id in self.seen:
                # Counted once already and running again: a repair (it keeps its run_id).
                run = replace(run, reopened=True)
            elif self.fresh or tracked.inherited:
                run = replace(run, inherited=True)
            since = run.uncounted_since or tracked.uncounted_since
            if since and run.run_id not in self.seen:
                run = replace(run, uncounted_since=since)
            if run.phases:  # observed from its terminal listing, not kept while it runs
                run = replace(run, phases=())
            still_active[run.run_id] = run
        self.fresh = False
        for run_id in vanished:
            if self.active.pop(run_id, None) is not None:
                self.vanished_runs += 1
                log.info("run %s no longer exists (job or run deleted); not counted", run_id)
        self.active = still_active
        self.watermark_ms = max(self.watermark_ms, cycle_start_ms)
        self._prune()
        return counted

    @property
    def core_series_used(self) -> int:
        """The series estimate of the jobs, task keys and one-time names admitted."""
        return (
            len(self.known_jobs) * SERIES_PER_JOB
            + len(self.known_task_keys) * SERIES_PER_TASK_KEY
            + len(self.known_one_time_names) * SERIES_PER_ONE_TIME_NAME
            + len(self.runs_by_compute)
        )

    @property
    def series_budget_used(self) -> int:
        """The series estimate of all that has been admitted, phase histograms too."""
        return (
            self.core_series_used
            + len(self.known_phase_sets) * SERIES_PER_PHASE_SET
            + sum(1 for key in self.start_ups if key[1] != OTHER_JOB) * SERIES_PER_START_UP
        )

    def _room_for_phases(self, series: int, what: str) -> bool:
        """Room for phase or start-up histograms: what the other families leave of max_series,
        less SERIES_PER_JOB for every job still to come (up to max_jobs; at most half of
        max_series, so a max_series lowered below max_jobs' share leaves phases room).

        Phases never make anything else fold: jobs, task keys and one-time names are admitted
        on ``core_series_used`` alone. So those that come after the phases filled their room
        take the total past max_series by their own series (at most max_series more)."""
        unseen = max(self.policy.max_jobs - len(self.known_jobs), 0)
        reserved = min(unseen * SERIES_PER_JOB, self.policy.max_series // 2)
        return self._room_for(series, what, self.series_budget_used, reserved)

    def _room_for(self, series: int, what: str, used: int | None = None, reserved: int = 0) -> bool:
        """Whether ``series`` more fit in max_series beside ``used`` (the core's estimate
        unless told) and ``reserved`` (kept for jobs still to come)."""
        used = self.core_series_used if used is None else used
        if used + series + reserved <= self.policy.max_series:
            return True
        if not (
            self.folded
            or self.folded_task_keys
            or self.folded_one_time_names
            or self.folded_phase_sets
            or self.folded_start_ups
        ):
            log.warning(
                "about %d series reached (max_series %d, %d of them kept for jobs still to "
                "come): further %s are reported as %r (see databricks_exporter_*_folded)",
                used + reserved,
                self.policy.max_series,
                reserved,
                what,
                OTHER_JOB,
            )
        return False

    def _task_key(self, job_id: str, task_key: str) -> str:
        key = (job_id, task_key)
        if key in self.known_task_keys:
            return task_key
        if self._room_for(SERIES_PER_TASK_KEY, "task keys"):
            self.known_task_keys.add(key)
            return task_key
        self.folded_task_keys.add(key)
        return OTHER_JOB

    def _keyed(self, run: Run) -> Run:
        """The run under the key it is reported by: its job (capped), or its one-time name."""
        if run.one_time:
            return replace(run, job_id="", job_name=self._one_time_name(run.job_name))
        if run.job_id in self.known_jobs:
            return run
        if len(self.known_jobs) < self.policy.max_jobs and self._room_for(SERIES_PER_JOB, "jobs"):
            self.known_jobs.add(run.job_id)
            return run
        if run.job_id not in self.folded:
            if not self.folded:
                log.warning(
                    "more than %d distinct jobs: further jobs are reported as job_id=%r "
                    "(raise max_jobs to see them; see databricks_exporter_jobs_folded)",
                    self.policy.max_jobs,
                    OTHER_JOB,
                )
            self.folded.add(run.job_id)
        return replace(run, job_id=OTHER_JOB, job_name=OTHER_JOB)

    def _one_time_name(self, run_name: str) -> str:
        name = run_name
        for pattern in self.policy.run_name_patterns:
            name = pattern.sub("*", name)
        if name in self.known_one_time_names:
            return name
        if len(self.known_one_time_names) < self.policy.max_one_time_names and self._room_for(
            SERIES_PER_ONE_TIME_NAME, "one-time run names"
        ):
            self.known_one_time_names.add(name)
            return name
        if not self.folded_one_time_names:
            log.warning(
                "more than %d distinct one-time run names: further names are reported as "
                "run_name=%r (add a run-name pattern for the part that changes per run)",
                self.policy.max_one_time_names,
                OTHER_JOB,
            )
        self.folded_one_time_names.add(name)
        return OTHER_JOB

    def _observe_terminal(self, run: Run, watermark_before: int) -> int:
        tracked = self.active.pop(run.run_id, None)
        reported_end = run.end_ms if run.end_reported else 0
        previous = self.seen.get(run.run_id)
        if previous is not None:
            _, seen_end = previous
            reopened = tracked is not None and tracked.reopened
            if reopened or (reported_end and seen_end and reported_end > seen_end):
                self.seen[run.run_id] = (run.start_ms, reported_end)
                self._count_repairs(run, after_ms=seen_end)
            return 0
        self.seen[run.run_id] = (run.start_ms, reported_end)
        counted_by = self._counted_by(tracked, watermark_before)
        if run.original is not None and run.repairs and run.original.end_ms <= counted_by:
            # A repaired run whose original attempt ended before the last cycle: counted then
            # (or before the baseline), forgotten since. Only its new repairs count now.
            self._count_repairs(run, after_ms=counted_by - self.overlap_ms)
            return 0
        self._update_last_run(run)
        if run.end_ms <= self.baseline_ms:
            return 0
        # Seen for the first time already repaired (runs/get gives the history): the run counts
        # with its original result, the repairs as repairs.
        result = run.original.result_state if run.original and run.repairs else run.result_state
        if run.one_time:
            key = (*run.one_time_key, result)
            self.one_time_total[key] += 1
            self._observe(self.one_time_durations, run.one_time_key, run.duration_seconds)
            self._observe_phases(run)
            return 1
        if run.repairs:
            self._count_repairs(run, after_ms=self.baseline_ms)
        self.runs_total[(run.job_id, run.job_name, result)] += 1
        for task in run.tasks:
            task_key = self._task_key(run.job_id, task.task_key)
            self.tasks_total[(run.job_id, run.job_name, task_key, task.result_state)] += 1
        self._observe(self.durations, run.job, run.duration_seconds)
        self._observe_phases(run)
        for compute in compute_kinds(run.phases):
            self.runs_by_compute[(run.job_id, run.job_name, compute)] += 1
        return 1

    @staticmethod
    def _observe(
        histograms: dict[Any, Histogram],
        key: Any,
        value: float,
        bounds: tuple[float, ...] = RUN_DURATION_BUCKETS,
    ) -> None:
        """Observe into a new copy of the key's histogram: one that a snapshot holds is never
        changed, so a snapshot copies the mapping, not 5,000 histograms."""
        hist = histograms.get(key)
        hist = Histogram(bounds) if hist is None else hist.copy()
        hist.observe(value)
        histograms[key] = hist

    def _phase_owner(self, run: Run, compute: str) -> tuple[str, str]:
        """The (job_id, job_name) or (run_name, run_type) a run's phases on ``compute`` are
        reported under: its own while max_series has room, else "__other__"."""
        owner = run.one_time_key if run.one_time else run.job
        key = (run.one_time, owner[0], compute)
        if owner[0] == OTHER_JOB or key in self.known_phase_sets:
            return owner
        if key not in self.folded_phase_sets and self._room_for_phases(
            SERIES_PER_PHASE_SET, "run phase histograms"
        ):
            self.known_phase_sets.add(key)
            return owner
        self.folded_phase_sets.add(key)
        return (OTHER_JOB, OTHER_JOB)

    def _observe_phases(self, run: Run) -> None:
        """Each task's phases under its compute kind, and the clusters the run started."""
        histograms = self.one_time_phases if run.one_time else self.phases
        for task in run.phases:
            owner = self._phase_owner(run, task.compute)
            for phase in PHASES:
                key: PhaseKey = (*owner, phase, task.compute)
                self._observe(histograms, key, task.seconds(phase), PHASE_BUCKETS)
        for start in start_ups(run.phases):
            start_key: StartUpKey = (start.compute, start.pool_id, start.node_type_id)
            if start_key in self.folded_start_ups or (
                start_key not in self.start_ups
                and (
                    len(self.start_ups) >= MAX_START_UP_KEYS
                    or not self._room_for_phases(SERIES_PER_START_UP, "cluster start-up histograms")
                )
            ):
                if len(self.folded_start_ups) < MAX_FOLDED_KEPT:
                    self.folded_start_ups.add(start_key)
                start_key = (start.compute, OTHER_JOB, OTHER_JOB)
            self._observe(self.start_ups, start_key, start.setup_seconds, PHASE_BUCKETS)

    def _count_repairs(self, run: Run, after_ms: int) -> None:
        """Repairs that ended after ``after_ms`` (one, with the run's result, without history)."""
        self._update_last_run(run)
        if run.end_ms <= self.baseline_ms or run.one_time:
            return
        attempts = [a for a in run.repairs if a.end_ms > max(after_ms, self.baseline_ms)]
        if not run.repairs:
            attempts = [Attempt(run.end_ms, run.result_state)]
        for attempt in attempts:
            self.repairs_total[(run.job_id, run.job_name, attempt.result_state)] += 1

    def _update_last_run(self, run: Run) -> None:
        if run.one_time:
            return  # its job never runs again: no last-run gauges for it
        last = self.last_runs.get(run.job_id)
        if last is None or run.end_ms >= last.end_ms:
            self.last_runs[run.job_id] = replace(
                run, tasks=(), original=None, repairs=(), phases=()
            )
        if outcome(run.result_state) == SUCCEEDED:
            self.last_success_ms[run.job_id] = max(
                self.last_success_ms.get(run.job_id, 0), run.end_ms
            )

    def _prune(self) -> None:
        # A run that started before the next listing's start_time_from can only come back
        # through the active list or runs/get, and those paths check `active` first. A run
        # that ended (or was repaired) recently is kept, so its repairs are recognised.
        horizon = self.horizon_ms
        stale = [rid for rid, (start, end) in self.seen.items() if max(start, end) < horizon]
        for run_id in stale:
            del self.seen[run_id]

    def snapshot(self) -> RunsSnapshot:
        # Run and TaskResult are frozen; copying the containers is enough.
        return RunsSnapshot(
            runs_total=dict(self.runs_total),
            tasks_total=dict(self.tasks_total),
            durations=dict(self.durations),  # never changed in place (see _observe)
            last_runs=dict(self.last_runs),
            last_success_ms=dict(self.last_success_ms),
            # A run owed its details (owe_details) is over: not in flight.
            active=tuple(run for run in self.active.values() if not run.terminal),
            baseline_ms=self.baseline_ms,
            watermark_ms=self.watermark_ms,
            folded_jobs=len(self.folded),
            repairs_total=dict(self.repairs_total),
            one_time_total=dict(self.one_time_total),
            one_time_durations=dict(self.one_time_durations),
            folded_one_time_names=len(self.folded_one_time_names),
            vanished_runs=self.vanished_runs,
            skipped_runs=dict(self.skipped_runs),
            folded_task_keys=len(self.folded_task_keys),
            backfill_progress=self.backfill_progress,
            phases=dict(self.phases),
            one_time_phases=dict(self.one_time_phases),
            runs_by_compute=dict(self.runs_by_compute),
            start_ups=dict(self.start_ups),
            folded_phase_sets=len(self.folded_phase_sets) + len(self.folded_start_ups),
            lookback_start_ms=self.backfill_from_ms,
        )
