"""Configuration: every bad value is one clear line and exit code 2; secrets are masked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import ConfigError, load_settings

HOST = "https://adb-1234567890123456.7.azuredatabricks.net"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        ([], {}, "DATABRICKS_HOST"),
        ([], {"DATABRICKS_HOST": "http://adb-1.azuredatabricks.net"}, "http:// is refused"),
        (["--interval", "0"], {"DATABRICKS_HOST": HOST}, "--interval"),
        (["--interval", "soon"], {"DATABRICKS_HOST": HOST}, "--interval"),
        (["--port", "70000"], {"DATABRICKS_HOST": HOST}, "--port"),
        (["--log-level", "LOUD"], {"DATABRICKS_HOST": HOST}, "--log.level"),
        (["--log.format", "xml"], {"DATABRICKS_HOST": HOST}, "--log.format"),
        (["--web.listen-address", "9180"], {"DATABRICKS_HOST": HOST}, "--web.listen-address"),
        (["--web.listen-address", "::1:9180"], {"DATABRICKS_HOST": HOST}, "in brackets"),
        (["--web.listen-address", ":99999"], {"DATABRICKS_HOST": HOST}, "--web.listen-address"),
        (
            ["--web.listen-address", ":9180", "--port", "9181"],
            {"DATABRICKS_HOST": HOST},
            "old spelling",
        ),
        (["--web.telemetry-path", "metrics"], {"DATABRICKS_HOST": HOST}, "--web.telemetry-path"),
        (["--web.telemetry-path", "/readyz"], {"DATABRICKS_HOST": HOST}, "--web.telemetry-path"),
        (["--web.config.file", "/nonexistent/web.yml"], {"DATABRICKS_HOST": HOST}, "web.yml"),
        (["--config", "/nonexistent/workspaces.yaml"], {}, "--config"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(args, env, names):
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_yaml_names_the_file_and_line(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text("workspaces:\n  - name: prod\n    host: [unclosed\n")
    result = run_cli("--config", str(config))
    assert result.returncode == 2
    assert "not valid YAML at line" in result.stderr and str(config) in result.stderr


def test_http_is_allowed_for_loopback_hosts():
    for host in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"):
        settings = load_settings([], {"DATABRICKS_HOST": host})
        assert settings.workspaces[0].host == host


def test_defaults_follow_the_contract():
    settings = load_settings([], {"DATABRICKS_HOST": HOST + "/"})
    assert (settings.listen, settings.telemetry_path, settings.interval) == (
        (":9180",),
        "/metrics",
        60.0,
    )
    assert (settings.log_level, settings.log_format, settings.web_config_file) == (
        "INFO",
        "logfmt",
        None,
    )
    ws = settings.workspaces[0]
    assert ws.host == HOST
    assert ws.name == "adb-1234567890123456"


@pytest.mark.parametrize(
    ("args", "yaml_text", "listen"),
    [
        (
            ["--web.listen-address", "127.0.0.1:1", "--web.listen-address", "[::1]:1"],
            "",
            ("127.0.0.1:1", "[::1]:1"),
        ),
        (["--listen-address", "127.0.0.1", "--port", "9999"], "", ("127.0.0.1:9999",)),
        (["--port", "9999"], "", ("0.0.0.0:9999",)),
        (["--listen-address", "::1"], "", ("[::1]:9180",)),
        ([], "web_listen_address: ':9100'\n", (":9100",)),
        ([], "web_listen_address: ['127.0.0.1:1', '[::1]:2']\n", ("127.0.0.1:1", "[::1]:2")),
        ([], "listen_address: 127.0.0.1\nport: 9101\n", ("127.0.0.1:9101",)),
        (["--web.listen-address", ":9102"], "web_listen_address: ':9100'\n", (":9102",)),
    ],
)
def test_listen_addresses_and_their_old_spelling(tmp_path: Path, args, yaml_text, listen):
    config = tmp_path / "ws.yaml"
    config.write_text(f"workspaces:\n  - name: a\n    host: {HOST}\n{yaml_text}")
    assert load_settings(["--config", str(config), *args], {}).listen == listen


def test_version_is_one_line_and_log_names_have_their_old_spelling():
    result = run_cli("--version", env={})
    assert result.returncode == 0
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("databricks-exporter, version ") and "python 3." in line
    settings = load_settings(
        ["--log-level", "debug", "--log.format", "JSON"], {"DATABRICKS_HOST": HOST}
    )
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    env = {"DATABRICKS_HOST": HOST, "LOG_LEVEL": "warning", "LOG_FORMAT": "json"}
    assert (load_settings([], env).log_level, load_settings([], env).log_format) == (
        "WARNING",
        "json",
    )


def test_yaml_lists_several_workspaces_with_secrets_from_env(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text(
        f"""
interval: 30
lookback_hours: 6
workspaces:
  - name: prod
    host: {HOST}
    client_id: 00000000-0000-0000-0000-000000000001
    tenant_id: 00000000-0000-0000-0000-0000000000aa
    client_secret_env: PROD_SECRET
  - name: dev
    host: https://adb-2.8.azuredatabricks.net
    token_env: DEV_PAT
"""
    )
    env = {"PROD_SECRET": "s3cret-value", "DEV_PAT": "dapi0123456789"}
    settings = load_settings(["--config", str(config), "--interval", "20"], env)
    assert settings.interval == 20.0  # the flag wins over the file
    assert settings.lookback_hours == 6.0
    prod, dev = settings.workspaces
    assert (prod.name, prod.client_secret, dev.name, dev.token) == (
        "prod",
        "s3cret-value",
        "dev",
        "dapi0123456789",
    )
    shown = repr(settings)
    assert "s3cret-value" not in shown and "dapi0123456789" not in shown and "***" in shown


def test_one_time_run_settings_from_yaml(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text(WS + "max_one_time_run_names: 50\nrun_name_patterns: ['_attempt_\\d+$']\n")
    settings = load_settings(["--config", str(config)], {})
    assert settings.max_one_time_run_names == 50
    assert settings.run_name_patterns == (r"_attempt_\d+$",)


WS = "workspaces:\n  - name: a\n    host: https://a.b\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workspaces: []\n", "non-empty list"),
        ("workspaces:\n  - host: https://a.azuredatabricks.net\n", "workspaces[0].name: missing"),
        ("workspaces:\n  - name: a\n", "workspaces[0].host"),
        (
            "workspaces:\n  - name: a\n    host: https://a.b\n    colour: red\n",
            "unknown key(s) colour",
        ),
        (
            "workspaces:\n  - name: a\n    host: https://a.b\n  - name: a\n    host: https://c.d\n",
            "duplicate",
        ),
        (
            "workspaces:\n  - name: a\n    host: https://a.b\n    token_env: NOPE\n",
            "NOPE is not set",
        ),
        ("workspaces:\n  - name: 'bad name!'\n    host: https://a.b\n", "must be 1-64"),
        ("intervall: 5\nworkspaces: []\n", "unknown setting(s) intervall"),
        ("- just\n- a list\n", "must be a mapping"),
        (WS + "run_name_patterns: '[0-9]+'\n", "run_name_patterns: expected a list"),
        (WS + "run_name_patterns: ['(unclosed']\n", "run_name_patterns[0]: not a regular"),
        (WS + "run_name_patterns: ['x*']\n", "run_name_patterns[0]: 'x*' matches the empty"),
        (WS + "max_one_time_run_names: 0\n", "max_one_time_run_names: must be > 0"),
        (WS + "collectors: {clusters: true}\n", "unknown collector(s) clusters"),
        (WS + "collectors: {pools: maybe}\n", "collectors: expected a mapping"),
        (
            WS + "collectors: {pools: false, runs: false, pipelines: false, jobs: false}\n",
            "every collector is turned off",
        ),
        (WS + "prices: 0.29\n", "prices: expected a mapping with currency"),
        (WS + "prices: {node_types: {Standard_DS3_v2: 0.29}}\n", "prices.currency: expected a"),
        (WS + "prices: {currency: dollars, node_types: {X: 1}}\n", "three-letter currency"),
        (WS + "prices: {currency: USD}\n", "prices.node_types: expected a mapping"),
        (WS + "prices: {currency: USD, node_types: {X: -1}}\n", "node_types.X: must be >= 0"),
        (WS + "prices: {currency: USD, node_types: {X: cheap}}\n", "expected a number"),
        (WS + "prices: {currency: USD, node_types: {'a b': 1}}\n", "is not a node type id"),
        (WS + "prices: {currency: USD, node_types: {X: 1}, vat: 20}\n", "unknown key(s) vat"),
        (WS + "max_pool_gap_seconds: -1\n", "max_pool_gap_seconds: must be >= 0"),
        (
            WS + "    prices: {currency: EUR, node_types: {X: .nan}}\n",
            "workspaces[0].prices.node_types.X: expected a finite number",
        ),
    ],
)
def test_bad_yaml_content_names_the_setting(tmp_path: Path, text: str, message: str):
    config = tmp_path / "ws.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=r".*") as info:
        load_settings(["--config", str(config)], {})
    assert message in str(info.value)


def test_price_tables_apply_per_workspace_over_the_top_level(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text(
        "prices: {currency: usd, node_types: {Standard_DS3_v2: 0.293}, source: list price}\n"
        "workspaces:\n  - name: a\n    host: https://a.b\n"
        "  - name: b\n    host: https://b.c\n"
        "    prices: {currency: EUR, node_types: {Standard_DS3_v2: 0.31}}\n"
    )
    settings = load_settings(["--config", str(config)], {})
    assert settings.prices is not None and settings.prices.currency == "USD"
    assert dict(settings.prices.per_hour) == {"Standard_DS3_v2": 0.293}
    a, b = settings.workspaces
    assert a.prices is None  # the top-level table applies
    assert b.prices is not None and (b.prices.currency, b.prices.per_hour["Standard_DS3_v2"]) == (
        "EUR",
        0.31,
    )


def yaml_file(tmp_path: Path, text: str | bytes, name: str = "ws.yaml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("make_args", "names"),
    [
        (lambda p: ["--interval", "nan"], "--interval: expected a finite number"),
        (lambda p: ["--interval", "inf"], "--interval: expected a finite number"),
        (lambda p: ["--lookback-hours=-inf"], "--lookback-hours"),
        (lambda p: ["--config", "/dev/zero"], "larger than 1 MiB"),
        (lambda p: ["--config", yaml_file(p, b"\xff\xfe\x00binary")], "not UTF-8 text"),
        (lambda p: ["--config", yaml_file(p, WS + "interval: .nan\n")], "interval:"),
        (lambda p: ["--config", yaml_file(p, WS + "port: [1]\n")], "port:"),
        (lambda p: ["--config", yaml_file(p, WS + "state_file: 5\n")], "--state-file"),
        (lambda p: ["--config", yaml_file(p, WS + "log_level: {a: 1}\n")], "log_level"),
        (
            lambda p: ["--config", yaml_file(p, WS + "    token_env: [1]\n")],
            "workspaces[0].token_env: expected text",
        ),
        (
            lambda p: ["--config", yaml_file(p, WS + "    client_id: 12\n")],
            "workspaces[0].client_id: expected text",
        ),
        (
            lambda p: [
                "--config",
                yaml_file(p, "workspaces:\n  - name: a\n    host: https://a.b:99999\n"),
            ],
            "workspaces[0].host: not a URL",
        ),
        (lambda p: ["--state-file", str(p)], "is a directory"),
        (lambda p: ["--state-file", "/etc/hostname/state.json"], "does not exist"),
    ],
)
def test_every_bad_value_of_any_type_is_one_line_and_exit_2(tmp_path: Path, make_args, names):
    result = run_cli(*make_args(tmp_path), env={"DATABRICKS_HOST": HOST})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_derived_workspace_name_names_the_setting_the_user_gave():
    # The name comes from the host when DATABRICKS_WORKSPACE_NAME is unset: name the host.
    host = "https://adb-" + "1" * 70 + ".7.azuredatabricks.net"
    result = run_cli(env={"DATABRICKS_HOST": host})
    assert result.returncode == 2
    assert result.stderr.startswith("databricks-exporter: configuration error: DATABRICKS_HOST")


def test_collectors_are_toggled_globally_by_flag_and_per_workspace_in_yaml(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text(
        "collectors: {pools: false}\n"
        "workspaces:\n"
        "  - name: a\n    host: https://a.b\n"
        "  - name: b\n    host: https://c.d\n    collectors: {pools: true}\n"
    )
    settings = load_settings(["--config", str(config)], {})
    assert settings.collectors == ("runs", "pipelines", "jobs")
    assert [w.collectors for w in settings.workspaces] == [
        (),
        ("runs", "pools", "pipelines", "jobs"),
    ]
    flagged = load_settings(["--config", str(config), "--collector.pools"], {})
    assert flagged.collectors == ("runs", "pools", "pipelines", "jobs")
    env = load_settings(["--no-collector.pools"], {"DATABRICKS_HOST": HOST})
    assert env.collectors == ("runs", "pipelines", "jobs")
    off = load_settings(["--no-collector.pipelines"], {"DATABRICKS_HOST": HOST})
    assert off.collectors == ("runs", "pools", "jobs")
    no_jobs = load_settings(["--no-collector.jobs"], {"DATABRICKS_HOST": HOST})
    assert no_jobs.collectors == ("runs", "pools", "pipelines")


def test_the_jobs_collector_has_its_own_bounded_interval(tmp_path: Path):
    env = {"DATABRICKS_HOST": HOST}
    assert load_settings([], env).jobs_interval == 600.0
    assert load_settings(["--jobs-interval", "15m"], env).jobs_interval == 900.0
    config = tmp_path / "ws.yaml"
    config.write_text(WS + "jobs_interval: 2h\n")
    assert load_settings(["--config", str(config)], {}).jobs_interval == 7200.0
    flag = load_settings(["--config", str(config), "--jobs-interval", "60"], {})
    assert flag.jobs_interval == 60.0  # the flag wins over the file
    for bad, message in (
        ("0", "--jobs-interval: must be > 0"),
        ("2d", "--jobs-interval: must be <= 86400"),
        ("often", "--jobs-interval: expected a number"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_settings(["--jobs-interval", bad], env)
    config.write_text(WS + "jobs_interval: -5\n")
    with pytest.raises(ConfigError, match=r"^jobs_interval: must be > 0"):
        load_settings(["--config", str(config)], {})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("team", "job_tags: expected a list of tag keys"),
        ("[team, 3]", "job_tags: expected a list of tag keys"),
        ("['']", "job_tags: expected a list of tag keys"),
        ("[" + ", ".join(f"t{i}" for i in range(21)) + "]", "at most 20 tag keys"),
        ("['" + "k" * 128 + "']", "is not a tag key"),
        ("[cost-center, cost.center]", "are both the label tag_cost_center"),
    ],
)
def test_job_tags_are_a_bounded_list_of_distinct_labels(tmp_path: Path, value: str, message: str):
    config = tmp_path / "ws.yaml"
    config.write_text(WS + f"job_tags: {value}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(["--config", str(config)], {})
    config.write_text(WS + "job_tags: [team, team, tier]\n")
    assert load_settings(["--config", str(config)], {}).job_tags == ("team", "tier")


def test_the_shipped_example_price_table_loads(tmp_path: Path):
    example = Path(__file__).parent.parent / "deploy" / "azure-vm-prices.example.yml"
    config = tmp_path / "ws.yaml"
    config.write_text(example.read_text() + WS)
    prices = load_settings(["--config", str(config)], {}).prices
    assert prices is not None and prices.currency == "USD" and "example" in prices.source
    assert len(prices.per_hour) >= 10 and all(0 < p < 50 for p in prices.per_hour.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "3", "--total-shards", "3"], "--shard: must be below --total-shards"),
        (["--shard", "-1", "--total-shards", "3"], "--shard"),
        (["--total-shards", "0"], "--total-shards"),
        (["--shard", "x"], "--shard"),
    ],
)
def test_bad_shard_settings_exit_2_naming_them(args, message):
    result = run_cli(*args, env={"DATABRICKS_HOST": HOST})
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_shard_keeps_only_its_workspaces(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text(
        "total_shards: 3\nshard: 1\nworkspaces:\n"
        + "".join(f"  - {{name: ws-{i}, host: '{HOST}', token_env: T}}\n" for i in range(9))
    )
    settings = load_settings(["--config", str(config)], {"T": "dapi-x"})
    assert [w.name for w in settings.workspaces] == ["ws-0", "ws-5", "ws-6"]
    flag = load_settings(["--config", str(config), "--shard", "0"], {"T": "dapi-x"})
    assert [w.name for w in flag.workspaces] == ["ws-1", "ws-2", "ws-7"]


def test_the_shard_can_come_from_a_statefulset_pod_name(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text(
        "total_shards: 3\nworkspaces:\n"
        + "".join(f"  - {{name: ws-{i}, host: '{HOST}', token_env: T}}\n" for i in range(9))
    )
    by_name = load_settings(
        ["--config", str(config), "--shard", "databricks-exporter-1"], {"T": "x"}
    )
    by_number = load_settings(["--config", str(config), "--shard", "1"], {"T": "x"})
    assert by_name.shard == 1 and by_name.workspaces == by_number.workspaces
    with pytest.raises(ConfigError, match="StatefulSet pod name"):
        load_settings(["--config", str(config), "--shard", "exporter"], {"T": "x"})


def _readme_keys(header: str) -> set[str]:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index(header) :].split("\n\n")[0].splitlines()[2:]
    keys: set[str] = set()
    for row in table:
        first = row.split("|")[1]
        keys |= set(re.findall(r"`([a-z_]+)`", first))
    return keys


def test_the_readme_configuration_tables_are_every_key_the_loader_accepts():
    from exporter import config

    assert _readme_keys("| top-level key |") == config._YAML_TOP_KEYS
    assert _readme_keys("| workspace key |") == config._YAML_WORKSPACE_KEYS


def test_durations_are_accepted_where_a_setting_is_a_time(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text(
        'interval: "1m"\nlookback_hours: 2d\ntimeout_seconds: 1m30s\n'
        f"workspaces:\n  - {{name: a, host: '{HOST}', token_env: T}}\n"
    )
    settings = load_settings(["--config", str(config)], {"T": "x"})
    assert (settings.interval, settings.lookback_hours, settings.timeout_seconds) == (60, 48, 90)
    assert load_settings(["--interval", "90s"], {"DATABRICKS_HOST": HOST}).interval == 90


def test_an_error_names_the_yaml_key_when_the_value_came_from_the_file(tmp_path: Path):
    config = tmp_path / "ws.yaml"
    config.write_text(
        f"interval: soon\nworkspaces:\n  - {{name: a, host: '{HOST}', token_env: T}}\n"
    )
    with pytest.raises(ConfigError, match=r"^interval: expected a number"):
        load_settings(["--config", str(config)], {"T": "x"})
    with pytest.raises(ConfigError, match=r"^--interval: expected a number"):
        load_settings(["--config", str(config), "--interval", "later"], {"T": "x"})
