"""The runs ledger in the state file: ``ledger_to_dict`` and back, every field checked."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict
from typing import Any

from exporter.collectors.runs.ledger import MAX_FOLDED_KEPT, LedgerPolicy, RunLedger
from exporter.collectors.runs.model import (
    OTHER_JOB,
    RUN_DURATION_BUCKETS,
    Attempt,
    Run,
    TaskResult,
)
from exporter.health import Histogram
from exporter.ids import normalise_run_id
from exporter.text import valid_text


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} is not an integer >= {minimum}: {str(value)[:40]!r}")
    return value


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number: {str(value)[:40]!r}")
    return float(value)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not text: {str(value)[:40]!r}")
    return valid_text(value)  # a file written before text was made valid may hold a surrogate


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _run_id(value: Any, what: str) -> int | str:
    run_id = normalise_run_id(value)
    if run_id is None:
        raise ValueError(f"{what} is not a run id: {str(value)[:40]!r}")
    return run_id


_RUN_TYPES: dict[str, Any] = {
    "job_id": _str,
    "job_name": _str,
    "life_cycle_state": _str,
    "result_state": _str,
    "start_ms": _int,
    "end_ms": _int,
    "duration_seconds": _float,
    "run_page_url": _str,
    "run_type": _str,
    "trigger": _str,
    "queue_ms": _int,
    "uncounted_since": _int,
}
_RUN_FLAGS = ("end_reported", "more_tasks", "reopened", "inherited", "paused")


def _hists(hists: dict[Any, Histogram]) -> list[list[Any]]:
    return [[*key, list(h.bounds), h.counts, h.total, h.count] for key, h in hists.items()]


def _restore_hists(rows: Any, key_len: int) -> dict[Any, Histogram]:
    out = {}
    for row in _list(rows, "histograms"):
        row = _list(row, "histogram")
        key = tuple(_str(k, "histogram label") for k in row[:key_len])
        rest = row[key_len:]
        if len(rest) == 3:  # v1: no bounds saved, the buckets of that version
            rest = [list(RUN_DURATION_BUCKETS), *rest]
        if len(rest) != 4:
            raise ValueError(f"histogram of {key} has {len(rest)} parts, not 4")
        bounds = tuple(_float(b, "bucket bound") for b in _list(rest[0], "bounds"))
        counts = [_int(c, "bucket count") for c in _list(rest[1], "counts")]
        if not bounds or len(counts) != len(bounds) or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram of {key}: {len(counts)} counts for {len(bounds)} bounds")
        count = _int(rest[3], "histogram count")
        if counts != sorted(counts) or counts[-1] > count:
            raise ValueError(f"histogram of {key} is not cumulative")
        out[key] = Histogram(bounds, counts, _float(rest[2], "histogram sum"), count)
    return out


def _saved(run: Run) -> dict[str, Any]:
    saved = asdict(run)
    del saved["phases"]  # observed when counted; neither active nor last runs keep them
    return saved


def ledger_to_dict(ledger: RunLedger) -> dict[str, Any]:
    return {
        "baseline_ms": ledger.baseline_ms,
        "watermark_ms": ledger.watermark_ms,
        "overlap_ms": ledger.overlap_ms,
        "seen": [[run_id, start, end] for run_id, (start, end) in ledger.seen.items()],
        "active": [_saved(run) for run in ledger.active.values()],
        "runs_total": [[*key, n] for key, n in ledger.runs_total.items()],
        "tasks_total": [[*key, n] for key, n in ledger.tasks_total.items()],
        "durations": _hists(ledger.durations),
        "last_runs": [_saved(run) for run in ledger.last_runs.values()],
        "last_success_ms": ledger.last_success_ms,
        "repairs_total": [[*key, n] for key, n in ledger.repairs_total.items()],
        "one_time_total": [[*key, n] for key, n in ledger.one_time_total.items()],
        "one_time_durations": _hists(ledger.one_time_durations),
        "one_time_names": sorted(ledger.known_one_time_names),
        "vanished_runs": ledger.vanished_runs,
        "skipped_runs": dict(ledger.skipped_runs),
        "backfill": [ledger.backfill_from_ms, ledger.backfill_to_ms],
        "pending": [list(window) for window in ledger.pending],
        "phases": _hists(ledger.phases),
        "one_time_phases": _hists(ledger.one_time_phases),
        "runs_by_compute": [[*key, n] for key, n in ledger.runs_by_compute.items()],
        "start_ups": _hists(ledger.start_ups),
        # Jobs reported as "__other__": a restart knows the workspace folds jobs (alerts that
        # need a job's own last success stay quiet there).
        "folded_jobs": sorted(ledger.folded)[:MAX_FOLDED_KEPT],
    }


def _attempt(data: Any) -> Attempt | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("a repair history item is not an object")
    return Attempt(_int(data.get("end_ms"), "end_ms"), _str(data.get("result_state"), "result"))


def _run(data: Any) -> Run:
    """A Run from its saved form, every field checked (a wrong type would break /metrics)."""
    if not isinstance(data, dict):
        raise ValueError("a saved run is not an object")
    fields: dict[str, Any] = {"run_id": _run_id(data.get("run_id"), "run_id")}
    for key, check in _RUN_TYPES.items():
        if key in data:
            fields[key] = check(data[key], key)
        elif key not in ("run_type", "trigger", "queue_ms", "uncounted_since"):  # older files
            raise ValueError(f"a saved run lacks {key}")
    for flag in _RUN_FLAGS:
        if flag in data:
            if not isinstance(data[flag], bool):
                raise ValueError(f"{flag} is not true/false")
            fields[flag] = data[flag]
    tasks = []
    for task in _list(data.get("tasks", []), "tasks"):
        if not isinstance(task, dict):
            raise ValueError("a saved task is not an object")
        tasks.append(
            TaskResult(_str(task.get("task_key"), "task_key"), _str(task.get("result_state"), "r"))
        )
    repairs = [_attempt(a) for a in _list(data.get("repairs", []), "repairs")]
    return Run(
        **fields,
        tasks=tuple(tasks),
        original=_attempt(data.get("original")),
        repairs=tuple(a for a in repairs if a is not None),
    )


def _counter(rows: Any, key_len: int) -> Counter[Any]:
    out: Counter[Any] = Counter()
    for row in _list(rows, "counter"):
        row = _list(row, "counter row")
        if len(row) != key_len + 1:
            raise ValueError(f"a counter row has {len(row)} items, not {key_len + 1}")
        out[tuple(_str(k, "label") for k in row[:key_len])] = _int(row[key_len], "count")
    return out


def ledger_from_dict(data: dict[str, Any], policy: LedgerPolicy | None = None) -> RunLedger:
    """A ledger from a v2 entry, or from a v1 entry (which lacks the newer parts).

    Every field's type is checked: ValueError (or KeyError for a missing part) otherwise.
    """
    ledger = RunLedger(
        baseline_ms=_int(data["baseline_ms"], "baseline_ms"),
        watermark_ms=_int(data["watermark_ms"], "watermark_ms"),
        policy=policy or LedgerPolicy(overlap_ms=_int(data["overlap_ms"], "overlap_ms")),
    )
    for row in _list(data["seen"], "seen"):
        row = _list(row, "seen row")
        if len(row) not in (2, 3):
            raise ValueError("a seen row has the wrong length")
        end = _int(row[2], "seen end") if len(row) == 3 else 0
        ledger.seen[_run_id(row[0], "seen run_id")] = (_int(row[1], "seen start"), end)
    ledger.active = {run.run_id: run for run in map(_run, _list(data["active"], "active"))}
    ledger.runs_total = _counter(data["runs_total"], 3)
    ledger.tasks_total = _counter(data["tasks_total"], 4)
    ledger.durations = _restore_hists(data["durations"], 2)
    ledger.last_runs = {run.job_id: run for run in map(_run, _list(data["last_runs"], "last"))}
    success = data["last_success_ms"]
    if not isinstance(success, dict):
        raise ValueError("last_success_ms is not an object")
    ledger.last_success_ms = {
        _str(k, "job_id"): _int(v, "last success") for k, v in success.items()
    }
    ledger.repairs_total = _counter(data.get("repairs_total", []), 3)
    ledger.one_time_total = _counter(data.get("one_time_total", []), 3)
    ledger.one_time_durations = _restore_hists(data.get("one_time_durations", []), 2)
    names = _list(data.get("one_time_names", []), "one_time_names")
    ledger.known_one_time_names = {_str(n, "one-time name") for n in names}
    ledger.vanished_runs = _int(data.get("vanished_runs", 0), "vanished_runs")
    skipped = data.get("skipped_runs", {})
    if not isinstance(skipped, dict):
        raise ValueError("skipped_runs is not an object")
    ledger.skipped_runs = Counter(
        {_str(k, "reason"): _int(v, "skipped") for k, v in skipped.items()}
    )
    backfill = data.get("backfill")
    # Absent (older files): nothing left to read, and nothing known read before the baseline
    # (databricks_exporter_lookback_start_timestamp_seconds is the baseline, not 1970).
    ledger.backfill_from_ms = ledger.baseline_ms
    if backfill is not None:
        window = _list(backfill, "backfill")
        if len(window) != 2:
            raise ValueError("backfill is not [from, to]")
        ledger.backfill_from_ms = _int(window[0], "backfill from", -(2**62))
        ledger.backfill_to_ms = None if window[1] is None else _int(window[1], "backfill to")
    for window in _list(data.get("pending", []), "pending"):
        window = _list(window, "pending window")
        if len(window) != 3:
            raise ValueError("a pending window is not [from, to, since]")
        ledger.pending.append(
            (_int(window[0], "pending from"), _int(window[1], "pending to"), _int(window[2], "s"))
        )
    ledger.phases = _restore_hists(data.get("phases", []), 4)
    ledger.one_time_phases = _restore_hists(data.get("one_time_phases", []), 4)
    ledger.runs_by_compute = _counter(data.get("runs_by_compute", []), 3)
    ledger.start_ups = _restore_hists(data.get("start_ups", []), 3)
    folded = _list(data.get("folded_jobs", []), "folded_jobs")
    ledger.folded = {_str(job_id, "folded job id") for job_id in folded}
    ledger.fresh = False
    ledger.known_phase_sets = {(False, job_id, c) for job_id, _, _, c in ledger.phases}
    ledger.known_phase_sets |= {(True, name, c) for name, _, _, c in ledger.one_time_phases}
    ledger.known_phase_sets = {k for k in ledger.known_phase_sets if k[1] != OTHER_JOB}
    ledger.known_jobs = {job_id for job_id in ledger.last_runs if job_id != OTHER_JOB}
    ledger.known_jobs |= {job_id for job_id, _, _ in ledger.runs_total if job_id != OTHER_JOB}
    ledger.known_task_keys = {(job_id, key) for job_id, _, key, _ in ledger.tasks_total}
    ledger.known_task_keys.discard((OTHER_JOB, OTHER_JOB))
    return ledger
