"""Families are declared once (exporter.catalogue): what is rendered, described, documented
and queried comes from those declarations."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import generate_latest

import exporter.collectors
from exporter.catalogue import HEALTH, Family, catalogue
from exporter.collectors import registration, registrations
from exporter.config import Settings, WorkspaceConfig
from exporter.metrics import build_registry
from exporter.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "exposition.prom"


def test_the_golden_exposition_is_rendered_from_the_declarations():
    declared = {f.name.removesuffix("_total"): f for f in catalogue()}
    text = GOLDEN.read_text()
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert len(types) > 40
    for name, kind in types.items():
        family = declared[name.removesuffix("_total")]
        assert kind == ("gauge" if family.type == "info" else family.type), name
        assert helps[name] == family.help.replace("\\", "\\\\").replace("\n", "\\n"), name


def test_every_name_the_dashboards_and_rules_query_is_declared():
    names = {f.name for f in catalogue()}
    generated = [*(ROOT / "dashboards").glob("*.json"), ROOT / "alerts" / "databricks.rules.yml"]
    queried = set()
    for path in generated:
        queried |= set(re.findall(r"\bdatabricks_[a-z0-9_]+", path.read_text()))
    # Alert names and links are not metrics; histogram series are the family's.
    queried = {re.sub(r"_(bucket|sum|count)$", "", q) for q in queried}
    queried = {q for q in queried if not q.startswith("databricks_exporter_dashboard")}
    assert len(queried) > 25
    assert sorted(queried - names) == []


def _settings() -> Settings:
    return Settings(workspaces=(WorkspaceConfig(name="w", host="http://127.0.0.1:9"),))


def test_a_family_declared_twice_fails_when_the_registry_is_built(monkeypatch):
    """prometheus-client refuses a name described twice; describe() answers from the
    declarations, so a collector that declares another's family stops the start."""
    pools = registration("pools")
    clash = replace(pools, name="toy", families=(HEALTH[0],), state_part=None)
    monkeypatch.setattr(exporter.collectors, "_found", (*registrations(), clash))
    ws = Workspace(WorkspaceConfig(name="w", host="http://127.0.0.1:9", token="t"), _settings())
    try:
        with pytest.raises(ValueError, match="declared twice: databricks_exporter_collection_suc"):
            build_registry([ws])
    finally:
        ws.close()


def test_two_collectors_declaring_one_family_are_refused_at_discovery():
    runs = registration("runs")
    toy = replace(registration("pools"), name="toy", families=(runs.families[0],))
    with pytest.raises(ValueError, match="declared by runs and toy"):
        exporter.collectors._checked([runs, toy])
    with pytest.raises(ValueError, match="two collectors are named"):
        exporter.collectors._checked([runs, runs])
    with pytest.raises(ValueError, match="live families"):
        exporter.collectors._checked([replace(runs, families=runs.families[:3])])


def test_a_declaration_that_breaks_the_conventions_is_refused():
    with pytest.raises(ValueError, match="_total"):
        Family("databricks_x", "counter", "X.", ("workspace",))
    with pytest.raises(ValueError, match="workspace"):
        Family("databricks_x", "gauge", "X.", ("job_id",))
    with pytest.raises(ValueError, match="type"):
        Family("databricks_x", "summary", "X.", ("workspace",))
    assert Family("databricks_x_seconds", "gauge", "X.", ("workspace",)).unit == "seconds"


def test_describe_names_every_declared_family_and_collect_yields_only_those():
    ws = Workspace(WorkspaceConfig(name="w", host="http://127.0.0.1:9", token="t"), _settings())
    try:
        registry = build_registry([ws])
        described = set(registry._names_to_collectors)
        for family in catalogue():
            if not family.per_workspace:
                continue  # the process's own: the exposition's live registry (selfmetrics)
            assert family.name in described or family.name + "_total" in described, family.name
        assert generate_latest(registry)  # nothing collected yet: only health families
    finally:
        ws.close()
