"""README is the front door: its internal links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_internal_link_of_the_readme_names_a_heading():
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,4} (.+)$", README, re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links, "the README has a table of contents"
    assert links <= anchors, sorted(links - anchors)


def test_the_table_of_contents_lists_every_section():
    sections = re.findall(r"^## (.+)$", README, re.M)
    contents = README[: README.index("## ")]
    for section in sections:
        assert f"(#{github_anchor(section)})" in contents, section


def _metrics_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """README's metrics table: name -> (type, labels besides workspace)."""
    table = README[README.index("## Metrics") : README.index("### Counting rules")]
    rows = {}
    for name, kind, labels in re.findall(r"^\| `(\w+)` \|([^|]+)\|([^|]*)\|", table, re.M):
        rows[name] = (kind.strip(), tuple(x.strip() for x in labels.split(",") if x.strip()))
    return rows


def test_the_metrics_table_is_the_catalogue():
    """Every family declared (exporter.catalogue) is in the table with its type and labels,
    and the table has no other."""
    from exporter.catalogue import catalogue

    readme_types = {"counter": "counter", "gauge": "gauge", "info": "gauge = 1"}
    readme_types["histogram"] = "histogram"
    declared = {
        f.name: (readme_types[f.type], f.labels[1:] if f.per_workspace else f.labels)
        for f in catalogue()
    }
    table = _metrics_table()
    assert len(table) > 40
    assert sorted(set(declared) - set(table)) == [], "declared, not in the README"
    assert sorted(set(table) - set(declared)) == [], "in the README, not declared"
    wrong = {name: (table[name], declared[name]) for name in table if table[name] != declared[name]}
    assert wrong == {}


def test_the_architecture_section_names_every_module_of_the_tree():
    root = Path(__file__).parent.parent
    section = README[README.index("## Architecture") : README.index("## Development")]
    for path in sorted((root / "exporter").glob("*.py")):
        if path.stem not in ("__init__", "__main__"):
            assert path.name in section, path.name
    for path in sorted((root / "databricks_simulator").glob("*.py")):
        if path.stem != "__init__":
            assert path.name in section, path.name
    folders = sorted(p for p in (root / "exporter" / "collectors").iterdir() if p.is_dir())
    folders = [p for p in folders if (p / "__init__.py").exists()]
    assert [p.name for p in folders] == ["jobs", "pipelines", "pools", "runs"]
    for folder in folders:
        lines = section[section.index(f"collectors/{folder.name}/") :].split("\n")
        text = " ".join(lines[:2])  # the folder's line and its continuation
        for module in folder.glob("*.py"):
            if module.stem != "__init__":
                assert module.stem in text, f"{folder.name}/{module.name}"
