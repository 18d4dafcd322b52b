"""Hostile input, round two: bad text, bad clocks, bad disks, bad neighbours (the exporter side).

Each test pins one attack of the second red-team round and the behaviour that replaced what
broke: a clear outcome, nothing lost, the process alive.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from apscheduler.schedulers.background import BackgroundScheduler
from conftest import (
    assert_counts_match_truth,
    baseline_ms,
    drain,
    select,
    sim_env,
    wait_for,
)
from fake_aad import CLIENT, SECRET, TENANT, FakeAAD
from loopback import Loopback, QuietHandler
from statefile_parts import restore_ledger, restore_pools, save_ledger

from databricks_simulator import FaultRule, SimClock, SimConfig, SimServer, SimWorkspace
from exporter.auth import DATABRICKS_SCOPE, CachedToken, build_credential
from exporter.client import POOLS_LIST, RUNS_LIST
from exporter.collectors import registration
from exporter.collectors.pools.model import MAX_INSTANCES, BadPool, parse_pool
from exporter.collectors.pools.usage import PoolTotals, PoolUsage
from exporter.collectors.runs.ledger import LedgerPolicy, RunLedger
from exporter.collectors.runs.persist import ledger_to_dict
from exporter.config import ConfigError, WorkspaceConfig, load_settings
from exporter.redact import RedactingFilter, secret_forms
from exporter.scheduling import ClockStepWatch
from exporter.servertime import ServerClock
from exporter.statefile import StateFile, StateFileInUse

HOST = "https://adb-1234567890123456.7.azuredatabricks.net"
NOW_S = 1_800_000_000.0


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class HostileWorkspace(Loopback):
    """A workspace whose runs/list and instance-pools/list answers are raw JSON text, so they
    can carry what the JSON grammar allows and Python's json module turns into odd values
    (a lone surrogate escape, 1e400)."""

    def __init__(self, runs_json: str, pools_json: str) -> None:
        self.runs_json = runs_json
        self.pools_json = pools_json
        workspace = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == RUNS_LIST:
                    body = workspace.runs_json if "completed_only" in self.path else '{"runs":[]}'
                elif path == POOLS_LIST:
                    body = workspace.pools_json
                else:
                    body = "{}"
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._listen(Handler)
        self.url = f"http://127.0.0.1:{self.port}"


def _run_json(run_id: int, name: str, end_ms: int) -> str:
    start_ms = end_ms - 60_000
    return (
        f'{{"run_id": {run_id}, "job_id": 7, "run_name": "{name}", "start_time": {start_ms}, '
        f'"end_time": {end_ms}, "run_duration": 60000, "state": {{"life_cycle_state": '
        '"TERMINATED", "result_state": "SUCCESS"}}'
    )


# --- 1. half an emoji ----------------------------------------------------------------------------


def test_a_lone_surrogate_in_api_text_never_fails_a_scrape_nor_a_restart(exporter, tmp_path):
    now_ms = int(time.time() * 1000)
    runs = '{"runs": [' + _run_json(1, "nightly \\ud83d", now_ms + 30_000) + "]}"
    pools = (
        '{"instance_pools": [{"instance_pool_id": "p1", "instance_pool_name": "pool \\udc00",'
        ' "node_type_id": "Standard_DS3_v2", "state": "ACTIVE", "stats": {"idle_count": 1}}]}'
    )
    state = tmp_path / "state.json"
    with HostileWorkspace(runs, pools) as ws:
        env = {"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": "dapi-hostile"}
        args = ["--interval", "0.5", "--lookback-hours", "1", "--state-file", str(state)]
        first = exporter(args, env)
        first.wait_ready()
        wait_for(lambda: "nightly" in first.metrics_text(), 10, "the run's last-run series")
        for _ in range(3):
            response = requests.get(first.url + "/metrics", timeout=5)
            assert response.status_code == 200
            assert "nightly \ufffd" in response.text and "pool \ufffd" in response.text
        wait_for(lambda: state.exists() and "nightly" in state.read_text(), 10, "the state file")
        first.stop(signal.SIGKILL)
        ws.runs_json = '{"runs": []}'  # the name now comes from the state file only
        second = exporter(args, env)
        second.wait_ready()
        response = requests.get(second.url + "/metrics", timeout=5)
        assert response.status_code == 200 and "nightly \ufffd" in response.text


def test_one_family_that_cannot_be_encoded_leaves_the_rest_of_the_page(monkeypatch, caplog):
    from prometheus_client.core import GaugeMetricFamily

    from exporter import exposition as module

    def bad_pools(views: Any) -> Any:
        bad = GaugeMetricFamily("databricks_bad", "Not encodable.", labels=["name"])
        bad.add_metric(["\ud83d"], 1)  # bypasses the parsers on purpose
        yield bad
        good = GaugeMetricFamily("databricks_good", "Fine.", labels=["name"])
        good.add_metric(["ok"], 1)
        yield good

    class Pools:
        snapshot = object()

    class Ws:
        name = "w"
        collectors = {"pools": Pools()}

        class health:
            @staticmethod
            def snapshot() -> Any:
                from exporter.health import WorkspaceHealth

                return WorkspaceHealth().snapshot()

    import exporter.collectors

    pools = exporter.collectors.registration("pools")
    monkeypatch.setattr(exporter.collectors, "_found", (replace(pools, render=bad_pools),))
    caplog.set_level(logging.ERROR)
    body, _ = module.Exposition([Ws()]).render()  # type: ignore[list-item]
    text = body.decode()
    assert "databricks_good" in text and "databricks_bad" not in text
    assert "databricks_bad left out of /metrics" in caplog.text


# --- 2, 3. bad clocks ----------------------------------------------------------------------------


def _http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def test_a_date_header_that_disagrees_with_the_elapsed_time_is_not_trusted(caplog):
    elapsed = [100.0]
    clock = ServerClock("w", elapsed=lambda: elapsed[0], wall=lambda: NOW_S)
    assert clock.read(int(NOW_S * 1000)) == NOW_S * 1000
    elapsed[0] += 60
    assert clock.read(int((NOW_S + 60) * 1000)) == (NOW_S + 60) * 1000  # agrees: trusted
    elapsed[0] += 60
    caplog.set_level(logging.WARNING)
    hour_ahead = int((NOW_S + 120 + 3600) * 1000)
    assert clock.read(hour_ahead) == (NOW_S + 120) * 1000  # the time kept since, not the header
    assert "+3600 s off" in caplog.text
    far = int(datetime(9999, 12, 31, tzinfo=timezone.utc).timestamp() * 1000)
    assert clock.read(far) == (NOW_S + 120) * 1000
    elapsed[0] += 60
    assert clock.read(None) == (NOW_S + 180) * 1000  # no Date: still Databricks' time
    assert clock.distrusted == 2


def test_a_real_step_of_databricks_clock_is_followed_once_every_answer_agrees():
    elapsed = [0.0]
    clock = ServerClock("w", elapsed=lambda: elapsed[0], wall=lambda: NOW_S)
    clock.read(int(NOW_S * 1000))
    readings = []
    for _ in range(12):  # Databricks' clock stepped 90 s back and stays there
        elapsed[0] += 30
        readings.append(clock.read(int((NOW_S + elapsed[0] - 90) * 1000)))
    assert readings[0] == (NOW_S + 30) * 1000  # not trusted at first
    assert readings[-1] == (NOW_S + elapsed[0] - 90) * 1000  # followed after 5 minutes


def test_one_date_an_hour_ahead_loses_no_run_and_pools_lose_no_time(make_sim, exporter):
    server = make_sim()
    proc = exporter(["--interval", "0.5"], sim_env(server))
    proc.wait_ready()
    time.sleep(2)
    ahead = _http_date(time.time() + 3600)
    server.add_faults(
        FaultRule(path_prefix=RUNS_LIST, status=200, body="date", date=ahead, count=1),
        FaultRule(path_prefix=POOLS_LIST, status=200, body="date", date=ahead, count=1),
        FaultRule(
            path_prefix=RUNS_LIST, status=200, body="date", date=_http_date(253402214400), count=1
        ),  # 9999-12-31
    )
    time.sleep(4)
    drain(server, proc)
    assert_counts_match_truth(proc, server)
    samples = proc.samples()
    unobserved = select(samples, "databricks_exporter_pool_unobserved_seconds_total")
    assert set(unobserved.values()) == {0.0}
    assert "Date header" in proc.output()


def test_a_fresh_start_with_databricks_clock_behind_counts_every_run_from_its_first_cycle(
    exporter,
):
    config = SimConfig(
        seed=11,
        jobs=8,
        history_hours=0.05,
        period_seconds=(1.0, 3.0),
        duration_seconds=(0.2, 1.5),
        long_run_rate=0.0,
    )
    behind = SimClock(start=time.time() - 120)  # Databricks 2 minutes behind the exporter
    with SimServer(SimWorkspace(config, behind)) as server:
        proc = exporter(["--interval", "0.5"], sim_env(server))
        proc.wait_ready()
        # The baseline is Databricks' time of the first cycle, not the exporter's.
        assert abs(baseline_ms(proc) - behind.now_ms()) < 30_000
        time.sleep(3)
        drain(server, proc)
        runs = assert_counts_match_truth(proc, server)
        assert sum(runs.values()) >= 10


# --- 4, 12. configuration bounds -----------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_at_once_in_one_line(tmp_path: Path):
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n"
    for i, prev in zip("bcdefghi", "abcdefgh", strict=True):
        bomb += f"{i}: &{i} [{','.join(['*' + prev] * 9)}]\n"
    config = tmp_path / "bomb.yaml"
    config.write_text(f"interval: &top\n  {bomb.replace(chr(10), chr(10) + '  ')}\n")
    started = time.monotonic()
    result = run_cli("--config", str(config), timeout=60)
    assert time.monotonic() - started < 20  # not the 74 s and MemoryError of before
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "aliases" in lines[0], result.stderr


def test_a_nested_bad_value_is_shown_short_without_expanding_it():
    nested: Any = ["x"] * 9
    for _ in range(8):
        nested = [nested] * 9  # shared references: 9^9 leaves if expanded
    from exporter import config as module

    shown = module._shown(nested)
    assert len(shown) <= 60


@pytest.mark.parametrize("value", ["1e12", "1e15", "1e300", "86401"])
def test_an_interval_no_one_needs_is_one_line_and_exit_2(value: str):
    result = run_cli("--interval", value, env={"DATABRICKS_HOST": HOST})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--interval: must be <=" in lines[0], result.stderr


# --- 9, 11. secrets and hosts --------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\n", "\r", "\t", "\x1b"])
def test_a_token_with_a_control_character_is_exit_2_without_the_token(bad: str):
    token = "dapi0123456789abcdef" + bad + "fedcba9876543210secretPART"
    result = run_cli(env={"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": token})
    assert result.returncode == 2
    assert "control character" in result.stderr
    assert "secretPART" not in result.stderr and "0123456789abcdef" not in result.stderr


def test_redaction_covers_the_escaped_forms_of_a_secret():
    secret = "abc\ndef-secret-ZZZ"
    redactor = RedactingFilter()
    redactor.add(secret)
    for text in (repr(secret), repr(secret.encode()), json.dumps(secret), f"b'Bearer {secret}'"):
        assert "secret-ZZZ" not in redactor.redact(text), text
    assert "abc\\ndef-secret-ZZZ" in secret_forms(secret)


@pytest.mark.parametrize(
    "host",
    [
        HOST + "#prod",
        "https://user:pw@adb-1.azuredatabricks.net",
        HOST + ";params",
        "https://adb-1.azuredatabricks.net\\@evil.com",
        "https://adb-1.azuredatabricks.net?x=1",
        "https://adb 1.azuredatabricks.net",
        "https://adb_1!.azuredatabricks.net",
    ],
)
def test_hosts_that_would_send_requests_elsewhere_are_refused(host: str):
    with pytest.raises(ConfigError) as info:
        load_settings([], {"DATABRICKS_HOST": host})
    message = str(info.value)
    assert message.startswith("DATABRICKS_HOST: ")
    assert "user:pw" not in message  # what precedes an '@' is never echoed


def test_a_password_in_a_host_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        load_settings([], {"DATABRICKS_HOST": "https://me:hunter2secret@adb-1.azuredatabricks.net"})
    assert "hunter2secret" not in str(info.value)


# --- 13. pool counts -----------------------------------------------------------------------------


def test_one_pool_with_impossible_counts_is_skipped_and_the_others_counted(exporter):
    pools = (
        '{"instance_pools": ['
        '{"instance_pool_id": "inf", "node_type_id": "Standard_DS3_v2", "state": "ACTIVE",'
        ' "stats": {"idle_count": 1e400}},'
        '{"instance_pool_id": "huge", "node_type_id": "Standard_DS3_v2", "state": "ACTIVE",'
        ' "stats": {"idle_count": 1e307}},'
        '{"instance_pool_id": "good", "node_type_id": "Standard_DS3_v2", "state": "ACTIVE",'
        ' "stats": {"idle_count": 2, "used_count": 1}}]}'
    )
    with HostileWorkspace('{"runs": []}', pools) as ws:
        env = {"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": "dapi-hostile"}
        proc = exporter(["--interval", "0.5", "--collector.runs", "--lookback-hours", "0"], env)
        proc.wait_ready()
        wait_for(
            lambda: select(proc.samples(), "databricks_instance_pool_idle_instance_seconds_total"),
            10,
            "integrated seconds",
        )
        samples = proc.samples()
        success = select(samples, "databricks_exporter_collection_success")
        assert success[frozenset({("workspace", "default"), ("collector", "pools")})] == 1.0
        idle = select(samples, "databricks_instance_pool_idle_instances")
        assert {dict(k)["pool_id"] for k in idle} == {"good"}
        assert all(math.isfinite(v) for v in dict(samples).values())
        assert "skipped pool 'inf'" in proc.output() and "skipped pool 'huge'" in proc.output()


def test_parse_pool_refuses_counts_that_are_not_counts():
    for value in (float("inf"), float("nan"), 1e307, MAX_INSTANCES + 1):
        with pytest.raises(BadPool):
            parse_pool({"instance_pool_id": "p", "stats": {"idle_count": value}})
    pool = parse_pool({"instance_pool_id": "p", "stats": {"idle_count": "3"}})
    assert pool is not None and pool.idle == 3


# --- 5, 6, 10, 14. the state file ----------------------------------------------------------------


def _ledger() -> RunLedger:
    return RunLedger.starting_at(int(NOW_S * 1000), 3600_000, LedgerPolicy(overlap_ms=300_000))


def test_a_failed_write_sets_the_file_aside_so_a_restart_never_restores_older_counters(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "state.json"
    ledger = _ledger()
    ledger.runs_total[("1", "job", "SUCCESS")] = 5
    usage = PoolUsage(300)
    usage.totals = {"p": PoolTotals(idle=382.0)}
    state = StateFile(path)
    save_ledger(state, "w", "h", ledger, usage.to_dict())
    ledger.runs_total[("1", "job", "SUCCESS")] = 44  # served, then the disk fills up
    real_write = StateFile._write

    def full(self: StateFile, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StateFile, "_write", full)
    with pytest.raises(OSError):
        save_ledger(state, "w", "h", ledger)
    assert not path.exists() and (tmp_path / "state.json.stale").exists()
    # Killed now. The runs ledger continues from the older file: the runs since are listed
    # again and counted once, so its counters come back to 44 (never shown lower: job series
    # appear only after the first cycle). The pools' integral cannot be re-derived: it starts
    # from zero (one reset for Prometheus) instead of going back to 382 from 1,376.
    after_kill = StateFile(path)
    restored = restore_ledger(after_kill, "w", "h")
    assert restored is not None and restored.runs_total[("1", "job", "SUCCESS")] == 5
    fresh_pools = PoolUsage(300)
    assert restore_pools(after_kill, "w", "h", fresh_pools) is False
    assert fresh_pools.totals == {}
    # Or the disk frees up: the next write is whole again and the marker goes.
    monkeypatch.setattr(StateFile, "_write", real_write)
    save_ledger(state, "w", "h", ledger)
    assert path.exists() and not (tmp_path / "state.json.stale").exists()
    restored = restore_ledger(StateFile(path), "w", "h")
    assert restored is not None and restored.runs_total[("1", "job", "SUCCESS")] == 44


def test_failed_state_writes_are_metrics_and_the_process_goes_on(make_sim, exporter, tmp_path):
    server = make_sim()
    directory = tmp_path / "state"
    directory.mkdir()
    state = directory / "state.json"
    proc = exporter(["--interval", "0.5", "--state-file", str(state)], sim_env(server))
    proc.wait_ready()
    wait_for(state.exists, 10, "a first state write")
    ok = select(proc.samples(), "databricks_exporter_state_last_write_timestamp_seconds")
    assert next(iter(ok.values())) > 0
    assert select(proc.samples(), "databricks_exporter_state_write_errors_total") == {
        frozenset({("workspace", "default")}): 0.0
    }
    # Writes fail from now on (as on a full or read-only disk): the directory is gone.
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()
    wait_for(
        lambda: (
            sum(select(proc.samples(), "databricks_exporter_state_write_errors_total").values())
            >= 3
        ),
        10,
        "state write errors",
    )
    assert proc.proc.poll() is None
    success = select(proc.samples(), "databricks_exporter_collection_success")
    assert set(success.values()) == {1.0}
    assert "cannot write state file" in proc.output()
    directory.mkdir()  # the disk is back: the next write is whole again
    wait_for(state.exists, 10, "a state write after the failures")


def test_failed_state_writes_are_counted_per_workspace(tmp_path: Path, monkeypatch):
    from exporter.health import WorkspaceHealth
    from exporter.workspace import Workspace

    path = tmp_path / "state.json"
    state = StateFile(path)
    monkeypatch.setattr(
        StateFile, "_write", lambda self, data: (_ for _ in ()).throw(OSError(28, "No space"))
    )
    ws = Workspace.__new__(Workspace)
    ws.name, ws.host, ws.state_file, ws.clock = "w", "h", state, lambda: NOW_S
    ws.health = WorkspaceHealth()
    ws.health.expect_state_writes()

    class Runs:
        ledger = _ledger()
        lock = threading.Lock()

    ws.collectors = {"runs": Runs()}  # type: ignore[dict-item]
    ws.registrations = {"runs": registration("runs")}
    for _ in range(3):
        ws._save_state("runs")
    writes = ws.health.snapshot().state_writes
    assert writes is not None and writes.errors == 3 and writes.last_success is None


def test_two_exporters_on_one_state_file_the_second_is_exit_2(make_sim, exporter, tmp_path):
    server = make_sim()
    state = tmp_path / "state.json"
    first = exporter(["--interval", "0.5", "--state-file", str(state)], sim_env(server))
    first.wait_ready()
    second = exporter(["--interval", "0.5", "--state-file", str(state)], sim_env(server))
    assert second.proc.wait(20) == 2
    assert "in use by another exporter" in second.output()
    assert f"pid {first.proc.pid}" in second.output()
    assert first.proc.poll() is None


def test_the_lock_is_released_when_the_owner_goes_and_leftover_temp_files_are_removed(
    tmp_path: Path,
):
    path = tmp_path / "state.json"
    owner = StateFile(path)
    owner.acquire()
    with pytest.raises(StateFileInUse):
        StateFile(path).acquire()
    save_ledger(owner, "w", "h", _ledger())
    owner.release()
    leftover = tmp_path / ".state.json.tmp-abc123"
    leftover.write_text("half a write")
    other = tmp_path / ".unrelated"
    other.write_text("not ours")
    StateFile(path).acquire()  # a killed owner's lock goes with its process
    assert not leftover.exists() and other.exists()


def test_a_huge_foreign_state_file_is_set_aside_without_reading_it(tmp_path: Path, caplog):
    path = tmp_path / "state.json"
    with open(path, "wb") as f:  # 200 MB, sparse: not JSON, not ours
        f.write(b"PK\x03\x04 an archive")
        f.truncate(200 << 20)
    caplog.set_level(logging.WARNING)
    state = StateFile(path)
    assert restore_ledger(state, "w", "h") is None
    (aside,) = tmp_path.glob("state.json.corrupt-*")
    assert aside.stat().st_size == 200 << 20 and not path.exists()  # moved, not copied
    assert "not an exporter state file" in caplog.text


def test_a_state_file_larger_than_the_limit_is_set_aside(tmp_path: Path, caplog):
    path = tmp_path / "state.json"
    path.write_text('{"format":"databricks-jobs-exporter/state/v2","workspaces":{}}' + " " * 5000)
    caplog.set_level(logging.WARNING)
    assert restore_ledger(StateFile(path, max_bytes=4096), "w", "h") is None
    assert "more than any state file" in caplog.text


def test_a_renamed_workspace_continues_and_entries_of_gone_ones_are_dropped(tmp_path: Path, caplog):
    path = tmp_path / "state.json"
    ledger = _ledger()
    ledger.runs_total[("1", "job", "SUCCESS")] = 44
    writer = StateFile(path)
    save_ledger(writer, "alpha", "https://a", ledger)
    save_ledger(writer, "gone", "https://g", _ledger())
    caplog.set_level(logging.WARNING)
    state = StateFile(path)
    state.keep_only({"alpha-prod": "https://a"})
    restored = restore_ledger(state, "alpha-prod", "https://a")
    assert restored is not None and restored.runs_total[("1", "job", "SUCCESS")] == 44
    assert "was saved as alpha (same host)" in caplog.text
    assert "'gone' is no longer configured" in caplog.text
    save_ledger(state, "alpha-prod", "https://a", restored)
    saved = json.loads(path.read_text())["workspaces"]
    assert set(saved) == {"alpha-prod"}


def test_a_watermark_saved_years_ahead_is_refused(tmp_path: Path):
    path = tmp_path / "state.json"
    ledger = RunLedger.starting_at(
        253402214400_000, 0, LedgerPolicy(overlap_ms=0)
    )  # 9999-12-31, saved by an old version
    doc = {
        "format": "databricks-jobs-exporter/state/v2",
        "workspaces": {"w": {"host": "h", "ledger": ledger_to_dict(ledger)}},
    }
    path.write_text(json.dumps(doc))
    assert restore_ledger(StateFile(path), "w", "h") is None


# --- 7. a stalled Entra ID -----------------------------------------------------------------------


def test_a_stalled_token_refresh_gives_up_at_its_deadline_and_keeps_the_valid_token(
    tmp_path: Path, monkeypatch
):
    with FakeAAD(tmp_path, SECRET, expires_in=3600) as aad:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(aad.ca_path))
        ws = WorkspaceConfig(
            name="t",
            host=HOST,
            client_id=CLIENT,
            tenant_id=TENANT,
            client_secret=SECRET,
            authority_host=aad.url,
            disable_instance_discovery=True,
        )
        now = [time.time()]
        cached = CachedToken(
            build_credential(ws),
            DATABRICKS_SCOPE,
            lambda: None,
            clock=lambda: now[0],
            deadline_seconds=1.0,
        )
        token = cached.get()
        aad.stall = True
        now[0] += 3600 - 200  # inside the refresh margin: a refresh is due, the token valid
        cached._force = True  # past azure-identity's own cache, as after a 401
        started = time.monotonic()
        assert cached.get() == token
        assert time.monotonic() - started < 5  # not the 149 s of before
        started = time.monotonic()
        assert cached.get() == token  # the stalled request is not asked again meanwhile
        assert time.monotonic() - started < 1


# --- 8. the wall clock steps back ----------------------------------------------------------------


def test_a_wall_clock_step_back_does_not_stop_collection():
    ran: list[float] = []
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    scheduler.add_job(
        lambda: ran.append(time.monotonic()),
        "interval",
        seconds=1,
        id="w:runs",
        next_run_time=datetime.now(timezone.utc),
    )
    scheduler.start()
    wall = [time.time()]
    watch = ClockStepWatch(scheduler, period=0.1, wall=lambda: wall[0] + time.monotonic())
    try:
        wait_for(lambda: len(ran) >= 1, 5, "the first run")
        # What APScheduler holds after the wall clock stepped back an hour: every due time an
        # hour further away in the clock's new terms. Nothing runs.
        job = scheduler.get_job("w:runs")
        job.modify(next_run_time=job.next_run_time + timedelta(hours=1))
        seen = len(ran)
        time.sleep(2.5)
        assert len(ran) == seen  # the silent stop of the red-team round
        watch.start()
        time.sleep(0.3)
        assert len(ran) == seen and watch.steps == 0  # no step seen yet, nothing moved
        wall[0] -= 3600  # the watch sees the step
        wait_for(lambda: len(ran) >= seen + 2, 5, "collections at their interval again")
        assert watch.steps == 1
    finally:
        watch.stop()
        scheduler.shutdown(wait=False)


# --- 15. the redactor stays small ----------------------------------------------------------------


def test_rotated_tokens_keep_the_redactor_bounded_and_the_last_two_redacted():
    redactor = RedactingFilter()
    redactor.add("configured-secret-value")
    for i in range(1000):
        redactor.rotate("token:1", f"eyJ0eXAi.token-number-{i:04d}")
    assert redactor.size < 40  # two tokens' forms and the configured secret's, not 1,000
    text = redactor.redact("a eyJ0eXAi.token-number-0999 b eyJ0eXAi.token-number-0998 c")
    assert "token-number" not in text
    assert "configured-secret-value" not in redactor.redact("x configured-secret-value")


def test_pool_integral_never_gets_an_infinite_counter_from_a_restore():
    usage = PoolUsage(300)
    with pytest.raises(ValueError):
        usage.restore({"last_ms": 1, "last": {}, "totals": {"p": [math.inf, 0, 0, 0, 0]}})
    assert usage.to_dict() == PoolUsage(300).to_dict()
