"""`make bench`: every figure, each script in its own process, into bench/results.md (for
people) and bench/results.json (the same figures, for tests and tools).

Usage: python bench/run.py [--quick] [--out bench/results.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).parent
FIGURES = (
    "api_cost.py",
    "api_floor.py",
    "scrape_latency.py",
    "renders_and_pools.py",
    "memory.py",
    "catch_up.py",
    "detection.py",
    "workspaces.py",
    "time_to_ready.py",
    "web_overhead.py",
    "jobs_cost.py",
    "phases_cost.py",
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {platform.node()}: {os.cpu_count()} CPUs "
        f"({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB; Linux "
        f"{platform.release()}; Python {platform.python_version()}; commit {commit or 'unknown'}"
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes: checks the scripts run")
    p.add_argument("--out", type=Path, default=HERE / "results.md")
    args = p.parse_args()
    sections = [
        "# Benchmark results\n",
        f"`make bench` ({'quick' if args.quick else 'full'}), {machine()}.\n",
        "Every figure comes from the loopback simulator (databricks_simulator/) on a simulated "
        "clock, with its baseline measured in the same run. Regenerate with `make bench`.\n",
    ]
    failed = []
    data: dict[str, object] = {"run": machine(), "quick": args.quick}
    for script in FIGURES:
        t0 = time.perf_counter()
        cmd = [sys.executable, str(HERE / script), *(["--quick"] if args.quick else [])]
        with tempfile.NamedTemporaryFile(suffix=".json") as figures:
            env = {**os.environ, "BENCH_FIGURES": figures.name}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            text = Path(figures.name).read_text()
            data[Path(script).stem] = json.loads(text) if text else None
        took = time.perf_counter() - t0
        if done.returncode != 0:
            failed.append(script)
            sections.append(
                f"## {script}: FAILED (exit {done.returncode})\n\n```\n{done.stderr[-3000:]}\n```\n"
            )
        else:
            sections.append(done.stdout.rstrip() + f"\n\n_{script}: {took:.0f} s._\n")
        print(sections[-1], flush=True)
    args.out.write_text("\n".join(sections))
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
