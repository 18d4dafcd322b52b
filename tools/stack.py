"""The whole alerting loop on one machine (`make stack`): the demo exporter, a real Prometheus
with the repository's rules, a real Alertmanager with alerts/alertmanager.example.yml's routes
and template, and a Slack stand-in that prints what it receives. Everything listens on
127.0.0.1; Ctrl-C (SIGINT) or SIGTERM stops every process this script started.

    python tools/stack.py                   # the `make demo` exporter (--simulate)
    python tools/stack.py --failing         # a simulated workspace where half the runs fail
    python tools/stack.py --port-base 9180  # exporter 9180, Prometheus 9181, Alertmanager 9182,
                                            # Slack stand-in 9183 (default: free ports)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "databricks.rules.yml"
AM_EXAMPLE = ROOT / "alerts" / "alertmanager.example.yml"
TEMPLATE = ROOT / "alerts" / "databricks.slack.tmpl"
PRICES = ROOT / "deploy" / "azure-vm-prices.example.yml"
WEBHOOK_PATH = "/services/T000/B000/LOCALSTANDIN"
INSTALL_HINT = "sudo apt-get install prometheus prometheus-alertmanager"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
# Loopback only, and never through a proxy (the children inherit this, as do our own checks).
NO_PROXY = "127.0.0.1,localhost"
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binaries() -> tuple[str | None, str | None]:
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    return prometheus, alertmanager


# --- the Slack stand-in -----------------------------------------------------------------------

_LINK = re.compile(r"<([^|<>]+)\|([^<>]*)>")
_RUN_LINK = re.compile(r"<([^|<>]+)\|Open the Databricks run>")
_URL = re.compile(r"https?://\S+")


def _plain(text: str) -> str:
    """Slack mrkdwn as a terminal shows it: <url|label> as `label (url)`, no bold markers."""
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    return text.replace("*", "").replace("`", "")


def _texts(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, text) of each part of a Slack message: attachments (Alertmanager), the top-level
    text, and section blocks."""
    parts: list[tuple[str, str]] = []
    for att in payload.get("attachments") or []:
        if isinstance(att, dict):
            parts.append((str(att.get("title") or ""), str(att.get("text") or "")))
    if payload.get("text"):
        parts.append(("", str(payload["text"])))
    for block in payload.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        text = block.get("text")
        if isinstance(text, dict) and text.get("text"):
            parts.append(("", str(text["text"])))
        for field in block.get("fields") or []:
            if isinstance(field, dict) and field.get("text"):
                parts.append(("", str(field["text"])))
    return parts


def summarise(payload: dict[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """A message's titles and one entry per alert ({"summary", "link"}), from the layout of
    alerts/databricks.slack.tmpl: each alert starts with its *summary* line and carries
    <run_page_url|Open the Databricks run>."""
    titles: list[str] = []
    alerts: list[dict[str, str]] = []
    for title, text in _texts(payload):
        if title:
            titles.append(title)
        chunks: list[list[str]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if (line.startswith("*") and line.endswith("*") and len(line) > 2) or not chunks:
                chunks.append([line])
            else:
                chunks[-1].append(line)
        for chunk in chunks:
            body = "\n".join(chunk)
            labelled = _RUN_LINK.search(body) or _LINK.search(body)
            bare = _URL.search(body)
            link = labelled.group(1) if labelled else bare.group(0) if bare else ""
            alerts.append({"summary": _plain(chunk[0]), "link": link})
    return titles, alerts


class SlackStandIn:
    """Accepts every POST (incoming-webhook style), answers `ok`, prints each message in
    readable form and appends it to ``out`` as a JSON line."""

    def __init__(self, port: int, out: IO[str] | None, say: Callable[[str], None]) -> None:
        self.out = out
        self.say = say
        self.received = 0
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(200, b"Slack stand-in: POST messages here; they are printed.\n")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    payload = json.loads(raw or b"{}")
                except ValueError:
                    payload = {"raw": raw.decode(errors="replace")}
                if not isinstance(payload, dict):
                    payload = {"raw": payload}
                stand_in.receive(self.path, payload)
                self._answer(200, b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_url = self.url + WEBHOOK_PATH
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def receive(self, path: str, payload: dict[str, Any]) -> None:
        titles, alerts = summarise(payload)
        stamp = time.strftime("%H:%M:%S")
        channel = payload.get("channel") or ""
        lines = [f"[{stamp}] slack {channel}: {' | '.join(titles) or '(no title)'}".rstrip()]
        for alert in alerts:
            lines.append(
                f"    - {alert['summary']}" + (f"  {alert['link']}" if alert["link"] else "")
            )
        with self._lock:
            self.received += 1
            self.say("\n".join(lines))
            if self.out is not None:
                record = {
                    "kind": "slack",
                    "time": time.time(),
                    "path": path,
                    "titles": titles,
                    "alerts": alerts,
                    "payload": payload,
                }
                self.out.write(json.dumps(record) + "\n")
                self.out.flush()


# --- configuration ----------------------------------------------------------------------------


def prometheus_config(exporter_port: int, am_port: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(RULES)],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        },
        "scrape_configs": [
            {
                # The rules select job="databricks-exporter".
                "job_name": "databricks-exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
    }


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """alerts/alertmanager.example.yml with the webhook pointed at the stand-in and short waits."""
    config = yaml.safe_load(AM_EXAMPLE.read_text())
    config["route"].update(group_wait="5s", group_interval="30s")
    for receiver in config.get("receivers") or []:
        for slack in receiver.get("slack_configs") or []:
            slack["api_url"] = webhook_url
    config["templates"] = [str(TEMPLATE)]
    return config


def failing_simulator() -> Any:
    """The demo's simulated workspace (exporter.cli.demo_config) with half the runs not
    succeeding instead of 15%: some job's last run has failed for over a minute at any time of
    day, so DatabricksJobRunFailed reaches the stand-in within about two minutes."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run from a checkout without the package installed
    from dataclasses import replace

    from databricks_simulator import SimServer, SimWorkspace
    from exporter.cli import demo_config

    return SimServer(SimWorkspace(replace(demo_config(), fail_rate=0.5))).start()


# --- processes --------------------------------------------------------------------------------


class Child:
    """A process this script started, its output in a log file of the temp directory."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        self.pid = self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        self._out.flush()
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def close(self) -> None:
        self._out.close()


def stop_children(children: list[Child], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each, wait for all, SIGKILL those still running after ``timeout``."""
    for child in children:
        if child.running():
            child.proc.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
        child.close()


def http_ok(url: str) -> bool:
    try:
        with _opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def child_env() -> dict[str, str]:
    """Our environment without Databricks or Azure settings (the stack talks to loopback only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "AZURE_"))}
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, [env.get(key, ""), NO_PROXY]))
    return env


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tools/stack.py",
        description="Run the demo exporter, Prometheus with the repository's rules, Alertmanager "
        "and a Slack stand-in on 127.0.0.1; Ctrl-C stops them all.",
    )
    p.add_argument(
        "--port-base",
        type=int,
        metavar="N",
        help="exporter on N, Prometheus N+1, Alertmanager N+2, Slack stand-in N+3 "
        "(default: free ports)",
    )
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop cleanly after this long")
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="also write the started processes and every message the stand-in receives to FILE "
        "as JSON lines",
    )
    p.add_argument(
        "--failing",
        action="store_true",
        help="instead of the exporter's own --simulate workspace, serve one (from this process) "
        "where half the runs fail: an alert within about two minutes at any time of day",
    )
    args = p.parse_args(argv)
    if args.port_base is not None and not 1 <= args.port_base <= 65532:
        p.error("--port-base: between 1 and 65532")
    if args.duration is not None and args.duration <= 0:
        p.error("--duration: must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prometheus, alertmanager = find_binaries()
    if prometheus is None or alertmanager is None:
        missing = [
            n for n, b in (("prometheus", prometheus), ("alertmanager", alertmanager)) if not b
        ]
        print(
            f"stack: {' and '.join(missing)} not found on PATH; "
            f"on Debian or Ubuntu: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2

    stop = threading.Event()
    received_signal: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received_signal.append(signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    print_lock = threading.Lock()

    def say(text: str) -> None:
        with print_lock:
            print(text, flush=True)

    if args.port_base is not None:
        ports = [args.port_base + i for i in range(4)]
    else:
        ports = [free_port() for _ in range(3)] + [0]
    exporter_port, prom_port, am_port, slack_port = ports

    tmp = Path(tempfile.mkdtemp(prefix="databricks-stack-"))
    out = open(args.out, "a", encoding="utf-8") if args.out else None  # noqa: SIM115
    children: list[Child] = []
    stand_in: SlackStandIn | None = None
    sim: Any = None
    status = 0
    try:
        try:
            stand_in = SlackStandIn(slack_port, out, say)
        except OSError as exc:
            print(
                f"stack: the Slack stand-in cannot listen on 127.0.0.1:{slack_port}: {exc}",
                file=sys.stderr,
            )
            return 1
        stand_in.start()
        env = child_env()
        (tmp / "alertmanager.yml").write_text(
            yaml.safe_dump(alertmanager_config(stand_in.webhook_url), sort_keys=False)
        )
        (tmp / "prometheus.yml").write_text(
            yaml.safe_dump(prometheus_config(exporter_port, am_port), sort_keys=False)
        )

        exporter_args = [
            sys.executable,
            "-m",
            "exporter",
            f"--web.listen-address=127.0.0.1:{exporter_port}",
            "--interval",
            "15",
        ]
        if args.failing:
            sim = failing_simulator()
            prices = yaml.safe_load(PRICES.read_text()) if PRICES.exists() else {}
            workspace = {"name": "simulated", "host": sim.url, "token_env": "STACK_SIM_TOKEN"}
            (tmp / "exporter.yml").write_text(
                yaml.safe_dump({**(prices or {}), "workspaces": [workspace]})
            )
            env["STACK_SIM_TOKEN"] = sim.token
            exporter_args += [
                "--config",
                str(tmp / "exporter.yml"),
                "--max-requests-per-second",
                "100",
            ]
        else:
            exporter_args.append("--simulate")

        children.append(Child("exporter", exporter_args, tmp / "exporter.log", env))
        children.append(
            Child(
                "alertmanager",
                [
                    alertmanager,
                    f"--config.file={tmp / 'alertmanager.yml'}",
                    f"--storage.path={tmp / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                tmp / "alertmanager.log",
                env,
            )
        )
        children.append(
            Child(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'prometheus'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp / "prometheus.log",
                env,
            )
        )
        urls = {
            "exporter": f"http://127.0.0.1:{exporter_port}/metrics",
            "prometheus": f"http://127.0.0.1:{prom_port}",
            "alertmanager": f"http://127.0.0.1:{am_port}",
            "slack": stand_in.url,
        }
        checks = {
            "exporter": f"http://127.0.0.1:{exporter_port}/readyz",
            "prometheus": f"http://127.0.0.1:{prom_port}/-/ready",
            "alertmanager": f"http://127.0.0.1:{am_port}/-/ready",
        }
        if out is not None:
            record = {
                "kind": "stack",
                "pid": os.getpid(),
                "pids": {c.name: c.pid for c in children},
                "urls": urls,
            }
            out.write(json.dumps(record) + "\n")
            out.flush()

        pending = dict(checks)
        deadline = time.monotonic() + READY_TIMEOUT
        while pending and not stop.is_set():
            dead = [c for c in children if not c.running()]
            if dead:
                for child in dead:
                    print(
                        f"stack: {child.name} exited with {child.proc.returncode}:\n{child.tail()}",
                        file=sys.stderr,
                    )
                return 1
            pending = {name: url for name, url in pending.items() if not http_ok(url)}
            if pending and time.monotonic() > deadline:
                for name in pending:
                    child = next(c for c in children if c.name == name)
                    print(
                        f"stack: {name} not ready after {READY_TIMEOUT:g}s:\n{child.tail()}",
                        file=sys.stderr,
                    )
                return 1
            if pending:
                stop.wait(0.3)
        if stop.is_set():
            return 0

        source = (
            "a simulated workspace where half the runs fail (--failing)"
            if args.failing
            else "the demo's simulated workspace (make demo)"
        )
        pids = ", ".join(f"{c.name} {c.pid}" for c in children)
        say(
            "\n".join(
                [
                    f"exporter       {urls['exporter']}   ({source})",
                    f"Prometheus     {urls['prometheus']}   (alerts: {urls['prometheus']}/alerts)",
                    f"Alertmanager   {urls['alertmanager']}",
                    f"Slack stand-in {urls['slack']}   (what it receives is printed below)",
                    f"pids: {pids}; logs in {tmp} (removed on exit)",
                    "DatabricksJobRunFailed fires once a job's last run has failed for 1m"
                    + (
                        "."
                        if args.failing
                        else "; in the demo failed jobs come and go, so the first alert can "
                        "take a while (--failing: within about two minutes)."
                    ),
                    "Ctrl-C stops all of them.",
                ]
            )
        )
        end = None if args.duration is None else time.monotonic() + args.duration
        while not stop.is_set():
            dead = [c for c in children if not c.running()]
            if dead:
                for child in dead:
                    print(
                        f"stack: {child.name} exited with {child.proc.returncode}:\n{child.tail()}",
                        file=sys.stderr,
                    )
                status = 1
                break
            if end is not None and time.monotonic() >= end:
                break
            stop.wait(0.5 if end is None else max(0.05, min(0.5, end - time.monotonic())))
        return status
    finally:
        # Ignore further Ctrl-C while stopping: the children are ours to wait for.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if children:
            say("stack: stopping " + ", ".join(c.name for c in reversed(children)))
        stop_children(list(reversed(children)))
        if stand_in is not None:
            stand_in.stop()
        if sim is not None:
            sim.stop()
        if out is not None:
            out.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if children:
            say("stack: stopped")


if __name__ == "__main__":
    sys.exit(main())
