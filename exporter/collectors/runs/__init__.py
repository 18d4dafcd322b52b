"""Job runs: runs/list (active, then completed since the watermark) and runs/get, counted
exactly once by the ledger, kept in the state file's ``ledger`` part."""

from __future__ import annotations

import logging
import time
from typing import Any

from exporter.collectors import Context, Registration
from exporter.collectors.runs.collector import RunsCollector
from exporter.collectors.runs.families import FAMILIES, LIVE, active_age_family, runs_families
from exporter.collectors.runs.ledger import LedgerPolicy, RunLedger
from exporter.collectors.runs.persist import ledger_from_dict, ledger_to_dict

log = logging.getLogger(__name__)

FUTURE_LIMIT_SECONDS = 366 * 86_400.0  # a saved time further ahead than this is not a time


def policy_of(ctx: Context) -> LedgerPolicy:
    settings = ctx.settings
    return LedgerPolicy(
        overlap_ms=int(settings.overlap_seconds * 1000),
        max_jobs=settings.max_jobs,
        max_one_time_names=settings.max_one_time_run_names,
        max_series=settings.max_series,
        extra_run_name_patterns=tuple(settings.run_name_patterns),
    )


def restored_ledger(data: Any, policy: LedgerPolicy | None = None) -> RunLedger:
    """A saved ledger (with its saved overlap when no policy is given); ValueError (or
    KeyError, TypeError) when it cannot be trusted."""
    ledger = ledger_from_dict(dict(data), policy)
    if ledger.watermark_ms > (time.time() + FUTURE_LIMIT_SECONDS) * 1000:
        # Saved after a bogus Date header (before those were checked): years ahead.
        raise ValueError("its watermark is a year ahead")
    return ledger


def build(ctx: Context) -> RunsCollector:
    policy = policy_of(ctx)
    now_ms = int(ctx.clock() * 1000)
    ledger = ctx.restore(lambda data: restored_ledger(data, policy), True)
    if ledger is not None:
        log.info(
            "workspace %s: restored %d counted runs from the state file",
            ctx.config.name,
            sum(ledger.runs_total.values()),
        )
    else:
        ledger = RunLedger.starting_at(
            now_ms, int(ctx.settings.lookback_hours * 3600 * 1000), policy
        )
    return RunsCollector(
        ctx.client,
        ledger,
        lambda: int(ctx.clock() * 1000),
        backfill_rate=ctx.settings.max_requests_per_second / 2,
    )


def save(collector: RunsCollector) -> dict[str, Any]:
    with collector.lock:  # the look-back may change the ledger from its thread
        return ledger_to_dict(collector.ledger)


COLLECTOR = Registration(
    name="runs",
    factory=build,
    render=runs_families,
    families=FAMILIES,
    order=10,
    live=active_age_family,
    live_families=LIVE,
    state_part="ledger",
    save=save,
)

__all__ = ["COLLECTOR", "LedgerPolicy", "RunLedger", "RunsCollector"]
