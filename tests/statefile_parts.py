"""The runs' and pools' parts of a StateFile, as the workspace saves and restores them."""

from __future__ import annotations

from typing import Any

from exporter.collectors.pools.usage import PoolUsage
from exporter.collectors.runs import restored_ledger
from exporter.collectors.runs.ledger import RunLedger
from exporter.collectors.runs.persist import ledger_to_dict
from exporter.statefile import StateFile


def save_ledger(
    state: StateFile,
    workspace: str,
    host: str,
    ledger: RunLedger,
    pools: dict[str, Any] | None = None,
) -> None:
    parts: dict[str, Any] = {"ledger": ledger_to_dict(ledger)}
    if pools is not None:
        parts["pools"] = pools
    state.save(workspace, host, parts)


def restore_ledger(state: StateFile, workspace: str, host: str) -> RunLedger | None:
    return state.restore(workspace, host, "ledger", restored_ledger, True)


def restore_pools(state: StateFile, workspace: str, host: str, usage: PoolUsage) -> bool:
    restored = state.restore(workspace, host, "pools", lambda d: usage.restore(d) or True, False)
    return restored is True
