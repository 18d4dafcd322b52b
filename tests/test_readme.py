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
