"""`make bench` in its quick form: every script runs, and what it reports about correctness holds
(counts equal the simulator's truth under load, catch-up succeeds). Times are not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench"


def table_rows(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_quick_benchmarks_run_and_report_exact_counts(tmp_path):
    out = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert "FAILED" not in text and "MISMATCH" not in text
    sections = {s.split("\n", 1)[0]: s for s in text.split("\n## ")[1:]}
    api = table_rows(sections["API cost per steady-state cycle"])
    assert len(api) == 2 and all(row[-1].startswith("yes") for row in api)
    small, large = (float(row[1].split()[0]) for row in api)
    baseline_small, baseline_large = (float(row[3]) for row in api)
    assert baseline_large > 5 * baseline_small  # the baseline grows with history...
    assert large < 2 * small  # ...the exporter does not
    assert "exact" in sections["Memory (RSS of the exporter)"]
    exporter_row, _ = table_rows(sections["Catch-up after an outage"])
    assert exporter_row[-2:] == ["ok", "yes"]
    detection = table_rows(sections["Detection latency (run end to its count in /metrics)"])
    assert [row[-1] for row in detection] == ["yes", "yes"]
    scrape = table_rows(sections["Scrape latency (/metrics over HTTP on loopback)"])
    assert [row[0] for row in scrape] == ["100", "1,000"]
    floor = table_rows(sections["API cost against the floor"])
    assert [row[-1].split()[0] for row in floor] == ["yes", "yes"]  # skewed clock, late lists
    busy = floor[1]
    assert float(busy[4].rstrip("x")) <= 1.3  # requests within 1.3x of the floor
    renders = table_rows(sections["Renders per interval by collector"])
    # One part per workspace and collector per interval; the baseline re-rendered everything.
    assert [row[1:4] for row in renders] == [["1.0", "1.0", "2.0"], ["3.0", "3.0", "6.0"]]
    pools = table_rows(sections["Pool integral against the simulator's truth"])
    assert all(float(row[3].rstrip("%")) < 1.0 for row in pools)  # within 1% of the truth
