"""Settings: command line, environment and optional YAML, validated into one typed object.

This is the only module of the exporter that reads ``os.environ``. Every problem is raised as a
``ConfigError`` whose message names the setting; the CLI prints it on one line and exits 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import platform
import re
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter import __version__
from exporter.collectors import collector_names, default_collectors, registrations
from exporter.logsetup import LOG_FORMATS

DEFAULT_PORT = 9180
DEFAULT_INTERVAL = 60.0
DEFAULT_JOBS_INTERVAL = 600.0  # the jobs' settings change rarely: jobs/list every 10 minutes
DEFAULT_LOOKBACK_HOURS = 24.0
DEFAULT_OVERLAP_SECONDS = 60.0
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_MAX_PAGES = 20_000
DEFAULT_MAX_RESPONSE_BYTES = 16 << 20
DEFAULT_MAX_REQUESTS_PER_SECOND = 10.0  # per workspace; Databricks allows several times more
DEFAULT_MAX_JOBS = 5000
DEFAULT_MAX_ONE_TIME_RUN_NAMES = 1000
DEFAULT_MAX_SERIES = 250_000
DEFAULT_DATE_TOLERANCE_SECONDS = 10.0
SIMULATED_WORKSPACE = "simulated"

# Upper bounds of the number settings (see _number); each far above any real need.
MAX_NUMBER = 1e9
MAX_INTERVAL = 86_400.0  # a day between collections
MAX_LOOKBACK_HOURS = 24.0 * 366
MAX_SECONDS = 86_400.0 * 31  # timeouts, overlaps and gaps
MAX_JOB_TAGS = 20  # job_tags: tag keys that become labels of databricks_job_info
MAX_TAG_KEY = 127  # characters of a tag key (Databricks' own limit)
MAX_YAML_NODES = 100_000  # nodes of the config once aliases are expanded (an alias bomb has 10^9)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


@dataclass(frozen=True)
class PriceTable:
    """`prices:` in the YAML: VM prices per hour by node_type_id, in one named currency."""

    currency: str
    per_hour: Mapping[str, float] = field(hash=False)
    source: str = ""  # where the figures come from, for the reader of the config


@dataclass(frozen=True)
class WorkspaceConfig:
    """One Databricks workspace and how to authenticate to it."""

    name: str
    host: str
    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    azure_resource_id: str | None = None
    authority_host: str | None = None
    disable_instance_discovery: bool = False
    collectors: tuple[str, ...] = ()  # enabled collectors of this workspace; () = the global ones
    prices: PriceTable | None = None  # this workspace's price table; None = the top-level one

    def __repr__(self) -> str:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        shown = ", ".join(
            f"{f.name}={repr(values[f.name]) if f.repr else _secret_repr(values[f.name])}"
            for f in fields(self)
        )
        return f"WorkspaceConfig({shown})"

    def secrets(self) -> list[str]:
        """Secret values that must never be logged."""
        return [s for s in (self.token, self.client_secret) if s]


@dataclass(frozen=True)
class Settings:
    """Everything the exporter needs to run, after validation."""

    workspaces: tuple[WorkspaceConfig, ...]
    listen: tuple[str, ...] = (f":{DEFAULT_PORT}",)  # --web.listen-address, each host:port
    telemetry_path: str = "/metrics"
    web_config_file: Path | None = None
    interval: float = DEFAULT_INTERVAL
    jobs_interval: float = DEFAULT_JOBS_INTERVAL  # the jobs collector's own interval
    job_tags: tuple[str, ...] = ()  # tag keys shown as tag_<key> labels of databricks_job_info
    lookback_hours: float = DEFAULT_LOOKBACK_HOURS
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_retries: int = DEFAULT_MAX_RETRIES
    max_pages: int = DEFAULT_MAX_PAGES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    max_jobs: int = DEFAULT_MAX_JOBS
    max_one_time_run_names: int = DEFAULT_MAX_ONE_TIME_RUN_NAMES
    max_series: int = DEFAULT_MAX_SERIES
    run_name_patterns: tuple[str, ...] = ()
    state_file: Path | None = None
    # enabled for every workspace without its own
    collectors: tuple[str, ...] = field(default_factory=default_collectors)
    prices: PriceTable | None = None  # VM prices for pools' idle cost; None: no cost series
    max_pool_gap_seconds: float = 0.0  # longer gaps are not integrated; 0: 5 x interval
    date_tolerance_seconds: float = DEFAULT_DATE_TOLERANCE_SECONDS  # 0: trust every Date
    simulate: bool = False
    log_level: str = "INFO"
    log_format: str = "logfmt"
    shard: int = 0  # this process collects the workspaces whose shard_of(name) is this
    total_shards: int = 1

    def secrets(self) -> list[str]:
        return [s for ws in self.workspaces for s in ws.secrets()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="databricks-exporter",
        description="Prometheus exporter for Azure Databricks job runs and instance pools.",
    )
    p.add_argument("--config", metavar="FILE", help="YAML file with a 'workspaces:' list")
    p.add_argument(
        "--web.listen-address",
        dest="web_listen_address",
        metavar="ADDR",
        action="append",
        help=f"address to serve on, repeatable: :{DEFAULT_PORT} (every interface), "
        f"127.0.0.1:{DEFAULT_PORT}, [::1]:{DEFAULT_PORT} (:{DEFAULT_PORT})",
    )
    p.add_argument(
        "--web.telemetry-path",
        dest="web_telemetry_path",
        metavar="PATH",
        help="path of the metrics (/metrics)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="exporter-toolkit web config: TLS, client certificates, basic auth, headers",
    )
    p.add_argument("--listen-address", metavar="ADDR", help=argparse.SUPPRESS)  # aliases of
    p.add_argument("--port", metavar="N", help=argparse.SUPPRESS)  # --web.listen-address
    p.add_argument(
        "--interval", metavar="SECONDS", help=f"seconds between collections ({DEFAULT_INTERVAL:g})"
    )
    p.add_argument(
        "--jobs-interval",
        metavar="SECONDS",
        help="seconds between two listings of the jobs' settings (the jobs collector) "
        f"({DEFAULT_JOBS_INTERVAL:g})",
    )
    p.add_argument(
        "--lookback-hours",
        metavar="HOURS",
        help="history read after the first cycle, in the background, for the last-run gauges "
        f"({DEFAULT_LOOKBACK_HOURS:g})",
    )
    p.add_argument(
        "--max-requests-per-second",
        metavar="N",
        help=f"client-side API rate limit per workspace ({DEFAULT_MAX_REQUESTS_PER_SECOND:g})",
    )
    p.add_argument("--state-file", metavar="PATH", help="persist the watermark and counters here")
    p.add_argument(
        "--simulate", action="store_true", help="serve a simulated workspace on loopback and use it"
    )
    p.add_argument(
        "--log.level",
        "--log-level",
        dest="log_level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (INFO)",
    )
    p.add_argument(
        "--log.format",
        dest="log_format",
        metavar="FORMAT",
        help="logfmt or json (logfmt)",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"databricks-exporter, version {__version__} "
        f"(python {platform.python_version()}, {platform.python_implementation()})",
    )
    p.add_argument(
        "--shard",
        metavar="N",
        help="collect only the workspaces of shard N (0-based; see --total-shards) (0)",
    )
    p.add_argument(
        "--total-shards",
        metavar="M",
        help="the workspaces are spread over M exporters by a stable hash of their names (1)",
    )
    for registration in registrations():
        name = registration.name
        p.add_argument(
            f"--collector.{name}",
            dest=f"collector_{name}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"collect {name} (on; --no-collector.{name} turns it off)"
            if registration.on_by_default
            else f"collect {name} (off; --collector.{name} turns it on)",
        )
    return p


def _number(
    name: str,
    raw: Any,
    kind: type,
    minimum: float,
    strict: bool = True,
    maximum: float = MAX_NUMBER,
) -> Any:
    """A number setting within (minimum, maximum], or ConfigError naming it.

    Every setting has an upper bound too: a value no real configuration needs (an interval of
    1e12 s) fails here in one line, not later as a traceback from the scheduler.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ConfigError(f"{name}: expected a number, got {_shown(raw)}")
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}: expected a number, got {_shown(raw)}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, got {_shown(raw)}")
    if (value <= minimum) if strict else (value < minimum):
        op = ">" if strict else ">="
        raise ConfigError(f"{name}: must be {op} {minimum:g}, got {_shown(raw)}")
    if value > maximum:
        raise ConfigError(f"{name}: must be <= {maximum:g}, got {_shown(raw)}")
    return value


_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _duration(raw: Any, unit_seconds: float) -> Any:
    """A duration as Prometheus users write it ("90s", "1m", "1h30m", "7d") in the setting's
    unit (``unit_seconds``: 1 for a setting in seconds, 3600 for one in hours); anything
    else unchanged, for _number to check (a plain number keeps the setting's unit)."""
    if not isinstance(raw, str) or not _DURATION_RE.match(raw.strip()):
        return raw
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(raw.strip()))
    return seconds / unit_seconds


def _patterns(raw: Any) -> tuple[str, ...]:
    """run_name_patterns: a list of regular expressions, each checked here."""
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise ConfigError("run_name_patterns: expected a list of regular expressions (strings)")
    for i, pattern in enumerate(raw):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"run_name_patterns[{i}]: not a regular expression: {exc}") from None
        if compiled.match(""):
            raise ConfigError(f"run_name_patterns[{i}]: {pattern!r} matches the empty string")
    return tuple(raw)


_TAG_LABEL_RE = re.compile(r"[^a-zA-Z0-9_]")


def _tag_label(key: str) -> str:
    """The label the jobs collector shows a tag key as (its model's tag_label, which a test
    keeps equal: a collector's code is not imported here)."""
    return "tag_" + _TAG_LABEL_RE.sub("_", key)


def _job_tags(raw: Any) -> tuple[str, ...]:
    """job_tags: a list of tag keys (at most MAX_JOB_TAGS), each a label of its own."""
    if not isinstance(raw, list) or not all(isinstance(k, str) and k.strip() for k in raw):
        raise ConfigError("job_tags: expected a list of tag keys (non-empty strings)")
    if len(raw) > MAX_JOB_TAGS:
        raise ConfigError(
            f"job_tags: at most {MAX_JOB_TAGS} tag keys (each is a label), got {len(raw)}"
        )
    labels: dict[str, str] = {}
    for key in raw:
        if len(key) > MAX_TAG_KEY or not key.isprintable():
            raise ConfigError(f"job_tags: {_shown(key)} is not a tag key")
        label = _tag_label(key)
        if label in labels and labels[label] != key:
            raise ConfigError(f"job_tags: {labels[label]!r} and {key!r} are both the label {label}")
        labels[label] = key
    return tuple(dict.fromkeys(raw))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def _shown(raw: Any) -> str:
    """A bad value as the error shows it: short, never a wall of text, and cheap whatever the
    value is (reprlib stops at a few items a level, so a nested YAML value is never expanded)."""
    text = _REPR.repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(setting: str, raw: Any) -> str | None:
    """An optional string setting (None when absent), or ConfigError naming it."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigError(f"{setting}: expected text, got {_shown(raw)}")
    return raw


def _is_loopback(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_HOST_REFUSED = re.compile(r"[@#;?\\\s\x00-\x1f\x7f]")
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def validate_host(setting: str, raw: Any) -> str:
    """Return the workspace URL without a trailing slash, or raise ConfigError."""
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{setting}: missing workspace URL (https://adb-....azuredatabricks.net)")
    host = raw.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    bad = _HOST_REFUSED.search(host.split("://", 1)[1])
    if bad:
        # '#' or ';' would send every request elsewhere on the host, '@' and '\\' make the part
        # before them a user name (so "adb...net\\@evil.com" is evil.com), '?' a query.
        char = bad.group()
        what = repr(char) if char.isprintable() and not char.isspace() else "a control character"
        # Not shown: what precedes an '@' may be a password.
        raise ConfigError(f"{setting}: give only scheme, host and port; {what} is not allowed")
    try:
        parts = urlsplit(host)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ConfigError(f"{setting}: not a URL ({exc}): {_shown(raw)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{setting}: not a URL: {_shown(raw)}")
    if not (_HOSTNAME_RE.match(parts.hostname) or _is_ip(parts.hostname)):
        raise ConfigError(f"{setting}: {parts.hostname!r} is not a host name: {_shown(raw)}")
    if port == 0:
        raise ConfigError(f"{setting}: port 0 is not a port: {_shown(raw)}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"{setting}: http:// is refused for non-loopback host {parts.hostname!r}; use https://"
        )
    if parts.path or parts.query:
        raise ConfigError(f"{setting}: give only scheme and host, not a path: {raw!r}")
    return host


_ORDINAL_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?-(\d+)$")


def _shard(raw: Any) -> int:
    """--shard: a number, or a StatefulSet pod's name (``databricks-exporter-2`` is shard 2),
    so a manifest can pass ``$(POD_NAME)`` on any Kubernetes version."""
    if isinstance(raw, str) and not raw.strip().isdigit():
        match = _ORDINAL_RE.match(raw.strip())
        if match is None:
            raise ConfigError(
                f"--shard: expected a number or a StatefulSet pod name ending in -<ordinal>, "
                f"got {_shown(raw)}"
            )
        raw = match.group(2)
    return int(_number("--shard", raw, int, 0, strict=False, maximum=10_000))


def shard_of(workspace: str, total_shards: int) -> int:
    """The shard a workspace belongs to: FNV-1a (32 bit) of its name modulo the shard count,
    as kube-state-metrics shards objects. Stable across processes, versions and machines
    (Python's own hash() is salted per process)."""
    h = 0x811C9DC5
    for byte in workspace.encode("utf-8"):
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % total_shards


def _default_name(host: str) -> str:
    hostname = urlsplit(host).hostname or "default"
    return hostname.split(".")[0] if not _is_loopback(hostname) else "default"


def _flag(raw: Any) -> bool:
    return str(raw).strip().lower() in ("1", "true", "yes", "on")


def _workspace_from_env(env: Mapping[str, str]) -> WorkspaceConfig:
    host = validate_host("DATABRICKS_HOST", env.get("DATABRICKS_HOST"))
    name = env.get("DATABRICKS_WORKSPACE_NAME") or _default_name(host)
    return _workspace(
        "DATABRICKS_WORKSPACE_NAME"
        if env.get("DATABRICKS_WORKSPACE_NAME")
        else "DATABRICKS_HOST (the workspace name comes from it; set DATABRICKS_WORKSPACE_NAME)",
        name=name,
        host=host,
        token=env.get("DATABRICKS_TOKEN"),
        client_id=env.get("AZURE_CLIENT_ID"),
        tenant_id=env.get("AZURE_TENANT_ID"),
        client_secret=env.get("AZURE_CLIENT_SECRET"),
        azure_resource_id=env.get("DATABRICKS_AZURE_RESOURCE_ID"),
        authority_host=env.get("AZURE_AUTHORITY_HOST"),
        disable_instance_discovery=_flag(env.get("AZURE_DISABLE_INSTANCE_DISCOVERY", "")),
    )


def _workspace(setting: str, **kw: Any) -> WorkspaceConfig:
    name = kw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"{setting}: workspace name {name!r} must be 1-64 letters, digits, '_.:-'"
        )
    clean: dict[str, Any] = {
        k: (v if not isinstance(v, str) else v.strip() or None) for k, v in kw.items()
    }
    clean["name"] = name
    for key in ("token", "client_secret", "client_id", "tenant_id"):
        value = clean.get(key)
        if isinstance(value, str) and _CONTROL_RE.search(value):
            # A pasted line break would end up in an HTTP header (and the error in the log).
            raise ConfigError(
                f"workspace {name}: {key} contains a line break or another control character "
                "(was it pasted with one?); value not shown"
            )
    clean["disable_instance_discovery"] = bool(kw.get("disable_instance_discovery"))
    clean["collectors"] = tuple(kw.get("collectors") or ())
    return WorkspaceConfig(**clean)


_YAML_WORKSPACE_KEYS = {
    "name",
    "collectors",
    "prices",
    "host",
    "token_env",
    "client_id",
    "tenant_id",
    "client_secret_env",
    "azure_resource_id",
    "authority_host",
    "disable_instance_discovery",
}
_YAML_TOP_KEYS = {
    "workspaces",
    "collectors",
    "prices",
    "max_pool_gap_seconds",
    "date_tolerance_seconds",
    "web_listen_address",
    "web_telemetry_path",
    "web_config_file",
    "listen_address",
    "port",
    "interval",
    "jobs_interval",
    "job_tags",
    "lookback_hours",
    "overlap_seconds",
    "timeout_seconds",
    "max_retries",
    "max_pages",
    "max_response_bytes",
    "max_requests_per_second",
    "max_jobs",
    "max_one_time_run_names",
    "max_series",
    "run_name_patterns",
    "state_file",
    "log_level",
    "log_format",
    "shard",
    "total_shards",
}


MAX_CONFIG_BYTES = 1 << 20  # a workspaces file is a few kB; /dev/zero is not one


def read_text(
    setting: str, path: str | Path, error: type[Exception] = ConfigError, hint: str = ""
) -> str:
    """A small text file a setting names (--config, --web.config.file), or ``error`` naming
    the setting: unreadable, over 1 MiB (``hint`` says more), not UTF-8, or not text."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise error(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise error(f"{setting}: {path} is larger than 1 MiB{hint}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{setting}: {path} is not UTF-8 text") from None
    if "\x00" in text:
        raise error(f"{setting}: {path} is not a text file")
    return text


def parse_yaml(setting: str, text: str, error: type[Exception] = ConfigError) -> Any:
    """YAML text, or ``error`` naming ``setting`` (where it says which file) and the line; an
    alias bomb is refused before it is expanded."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and _expanded_size(root) > MAX_YAML_NODES:
            raise error(
                f"{setting} expands to more than {MAX_YAML_NODES:,} values through YAML "
                "aliases (&/*); write the values out"
            )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{setting} is not valid YAML{where}") from None


def _load_yaml(path: str) -> dict[str, Any]:
    text = read_text("--config", path, hint="; is it the right file?")
    doc = parse_yaml(f"--config: {path}", text)
    if not isinstance(doc, dict):
        raise ConfigError(f"--config: {path} must be a mapping with a 'workspaces:' list")
    unknown = set(doc) - _YAML_TOP_KEYS
    if unknown:
        raise ConfigError(f"--config: unknown setting(s) {', '.join(sorted(map(str, unknown)))}")
    return doc


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once every alias is expanded, without expanding it:
    an alias is the same node object, so sizes are memoised by identity (a cycle counts as
    over the limit)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if depth > 100:
            return MAX_YAML_NODES + 1
        sizes[key] = MAX_YAML_NODES + 1  # seen again while being sized: a cycle
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        sizes[key] = min(total, MAX_YAML_NODES + 1)
        return sizes[key]

    return size(root, 0)


def _check_state_file(path: Path) -> None:
    """An unwritable state path is a setting error now, not an ERROR line every cycle."""
    target = path.resolve()  # a symlink is followed: its target is what gets written
    if target.is_dir():
        raise ConfigError(f"--state-file: {path} is a directory")
    if not target.parent.is_dir():
        raise ConfigError(f"--state-file: directory {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--state-file: directory {target.parent} is not writable")
    if target.exists() and not os.access(target, os.R_OK):
        raise ConfigError(f"--state-file: {path} exists but is not readable")


_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
_NODE_TYPE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def _prices(setting: str, raw: Any) -> PriceTable | None:
    """`prices: {currency: USD, node_types: {Standard_DS3_v2: 0.293}, source: ...}`."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{setting}: expected a mapping with currency and node_types")
    unknown = set(raw) - {"currency", "node_types", "source"}
    if unknown:
        raise ConfigError(f"{setting}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    currency = raw.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        raise ConfigError(
            f"{setting}.currency: expected a three-letter currency code such as USD or EUR, "
            f"got {_shown(currency)}"
        )
    table = raw.get("node_types")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{setting}.node_types: expected a mapping of node_type_id to price")
    per_hour = {}
    for node_type, price in table.items():
        if not isinstance(node_type, str) or not _NODE_TYPE_RE.match(node_type):
            raise ConfigError(f"{setting}.node_types: {_shown(node_type)} is not a node type id")
        per_hour[node_type] = _number(f"{setting}.node_types.{node_type}", price, float, 0, False)
    source = _text(f"{setting}.source", raw.get("source")) or ""
    return PriceTable(currency=currency.upper(), per_hour=per_hour, source=source)


def _toggles(setting: str, raw: Any) -> dict[str, bool]:
    """`collectors: {pools: false}`: which collectors a YAML level turns on or off."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, bool) for v in raw.values()):
        raise ConfigError(f"{setting}: expected a mapping of collector names to true/false")
    unknown = set(raw) - set(collector_names())
    if unknown:
        raise ConfigError(
            f"{setting}: unknown collector(s) {', '.join(sorted(map(str, unknown)))} "
            f"(known: {', '.join(collector_names())})"
        )
    return dict(raw)


def _enabled(setting: str, *levels: dict[str, bool]) -> tuple[str, ...]:
    """Collectors on after applying the levels in order (later levels win)."""
    on = {r.name: r.on_by_default for r in registrations()}
    for level in levels:
        on.update(level)
    enabled = tuple(name for name in collector_names() if on[name])
    if not enabled:
        raise ConfigError(f"{setting}: every collector is turned off; nothing would be collected")
    return enabled


def _workspaces_from_yaml(
    doc: Mapping[str, Any], env: Mapping[str, str], toggles: Sequence[dict[str, bool]]
) -> list[WorkspaceConfig]:
    """The YAML's workspaces; ``toggles`` are the collector levels a workspace's own overrides."""
    items = doc.get("workspaces")
    if not isinstance(items, list) or not items:
        raise ConfigError("--config: 'workspaces' must be a non-empty list")
    result = []
    for i, item in enumerate(items):
        where = f"workspaces[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a mapping with name and host")
        unknown = set(item) - _YAML_WORKSPACE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        if "name" not in item:
            raise ConfigError(f"{where}.name: missing")
        for key in ("client_id", "tenant_id", "azure_resource_id", "authority_host"):
            _text(f"{where}.{key}", item.get(key))
        secrets = {}
        for key, target in (("token_env", "token"), ("client_secret_env", "client_secret")):
            var = _text(f"{where}.{key}", item.get(key))
            if var is not None:
                if var not in env:
                    raise ConfigError(f"{where}.{key}: environment variable {var} is not set")
                secrets[target] = env[var]
        result.append(
            _workspace(
                f"{where}.name",
                name=item["name"],
                host=validate_host(f"{where}.host", item.get("host")),
                client_id=item.get("client_id"),
                tenant_id=item.get("tenant_id"),
                azure_resource_id=item.get("azure_resource_id"),
                authority_host=item.get("authority_host") or env.get("AZURE_AUTHORITY_HOST"),
                disable_instance_discovery=_flag(
                    item.get(
                        "disable_instance_discovery",
                        env.get("AZURE_DISABLE_INSTANCE_DISCOVERY", ""),
                    )
                ),
                prices=_prices(f"{where}.prices", item.get("prices")),
                collectors=()
                if item.get("collectors") is None
                else _enabled(
                    f"{where}.collectors",
                    *toggles,
                    _toggles(f"{where}.collectors", item["collectors"]),
                ),
                **secrets,
            )
        )
    names = [w.name for w in result]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"--config: duplicate workspace name(s) {', '.join(dupes)}")
    return result


def split_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (every interface) -> (host, port); ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, [::1]:port or :port, got {_shown(address)}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets ([::1]:9180), got {_shown(address)}")
    return host, int(port)


def _listen(args: argparse.Namespace, doc: Mapping[str, Any]) -> tuple[str, ...]:
    """--web.listen-address (repeatable; YAML web_listen_address: one or a list), or the old
    --listen-address/--port pair (and YAML listen_address/port) as one address."""
    new = args.web_listen_address
    name = "--web.listen-address"
    if new is None and "web_listen_address" in doc:
        new, name = doc["web_listen_address"], "web_listen_address"
        new = [new] if isinstance(new, str) else new
        if not isinstance(new, list) or not new or not all(isinstance(a, str) for a in new):
            raise ConfigError(f"{name}: expected host:port or a list of them")
    old_host = args.listen_address if args.listen_address is not None else doc.get("listen_address")
    old_port = args.port if args.port is not None else doc.get("port")
    if new is not None and (old_host is not None or old_port is not None):
        raise ConfigError(
            f"{name}: give it alone; --listen-address and --port (listen_address, port) are "
            "its old spelling"
        )
    if new is None:
        if old_host is None and old_port is None:
            return (f":{DEFAULT_PORT}",)
        port_name = "--port" if args.port is not None else "port"
        port = _number(
            port_name, DEFAULT_PORT if old_port is None else old_port, int, 0, strict=False
        )
        if port > 65535:
            raise ConfigError(f"{port_name}: must be <= 65535, got {port}")
        host = str(_text("--listen-address", old_host) or "0.0.0.0")
        new, name = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"], "--listen-address"
    for address in new:
        try:
            split_address(address)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return tuple(dict.fromkeys(new))


def _telemetry_path(name: str, raw: Any) -> str:
    path = _text(name, raw) or ""
    if not path.startswith("/") or path in ("/", "/healthz", "/readyz") or not path.isprintable():
        raise ConfigError(
            f"{name}: expected a path such as /metrics (not /, /healthz or /readyz), "
            f"got {_shown(raw)}"
        )
    if any(c.isspace() for c in path) or "?" in path or "#" in path:
        raise ConfigError(f"{name}: a path has no spaces, '?' or '#', got {_shown(raw)}")
    return path


def load_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Parse and validate the command line, environment and config file."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    doc: dict[str, Any] = _load_yaml(args.config) if args.config else {}

    def pick(flag: Any, key: str, default: Any) -> Any:
        return flag if flag is not None else doc.get(key, default)

    def named(flag_name: str, flag: Any, key: str) -> str:
        """How an error names a setting: the flag when given there, else the YAML key."""
        return key if flag is None and key in doc else flag_name

    # Collectors: the YAML's top level, then the command line, then each workspace's own.
    flags = {
        name: value
        for name in collector_names()
        if (value := getattr(args, f"collector_{name}")) is not None
    }
    top = _toggles("collectors", doc.get("collectors"))
    collectors = _enabled("--collector.*", top, flags)
    if args.simulate:
        workspaces: list[WorkspaceConfig] = [
            WorkspaceConfig(name=SIMULATED_WORKSPACE, host="http://127.0.0.1")
        ]
    elif args.config:
        workspaces = _workspaces_from_yaml(doc, env, (top, flags))
    else:
        workspaces = [_workspace_from_env(env)]
    log_level = str(
        _text("log_level", pick(args.log_level, "log_level", env.get("LOG_LEVEL", "INFO")))
    ).upper()
    log_level = {"WARN": "WARNING"}.get(log_level, log_level)  # promslog's name of it
    if log_level not in _LOG_LEVELS:
        raise ConfigError(
            f"--log.level: expected one of {', '.join(_LOG_LEVELS)}, got {log_level!r}"
        )
    log_format = str(
        _text("log_format", pick(args.log_format, "log_format", env.get("LOG_FORMAT", "logfmt")))
    ).lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"--log.format: expected one of {', '.join(LOG_FORMATS)}, got {log_format!r}"
        )
    total_shards = _number(
        named("--total-shards", args.total_shards, "total_shards"),
        pick(args.total_shards, "total_shards", 1),
        int,
        0,
        maximum=10_000,
    )
    shard = _shard(pick(args.shard, "shard", 0))
    if shard >= total_shards:
        raise ConfigError(
            f"--shard: must be below --total-shards ({total_shards}), got {shard} "
            "(shards count from 0)"
        )
    if not args.simulate:
        workspaces = [w for w in workspaces if shard_of(w.name, total_shards) == shard]
    listen = _listen(args, doc)
    telemetry_path = _telemetry_path(
        named("--web.telemetry-path", args.web_telemetry_path, "web_telemetry_path"),
        pick(args.web_telemetry_path, "web_telemetry_path", "/metrics"),
    )
    web_config_file = _text(
        named("--web.config.file", args.web_config_file, "web_config_file"),
        pick(args.web_config_file, "web_config_file", None),
    )
    state_file = _text("--state-file", pick(args.state_file, "state_file", None))
    if state_file:
        _check_state_file(Path(state_file))
    return Settings(
        workspaces=tuple(workspaces),
        listen=listen,
        telemetry_path=telemetry_path,
        web_config_file=Path(web_config_file) if web_config_file else None,
        interval=_number(
            named("--interval", args.interval, "interval"),
            _duration(pick(args.interval, "interval", DEFAULT_INTERVAL), 1.0),
            float,
            0,
            maximum=MAX_INTERVAL,
        ),
        jobs_interval=_number(
            named("--jobs-interval", args.jobs_interval, "jobs_interval"),
            _duration(pick(args.jobs_interval, "jobs_interval", DEFAULT_JOBS_INTERVAL), 1.0),
            float,
            0,
            maximum=MAX_INTERVAL,
        ),
        job_tags=_job_tags(doc.get("job_tags", [])),
        lookback_hours=_number(
            named("--lookback-hours", args.lookback_hours, "lookback_hours"),
            _duration(pick(args.lookback_hours, "lookback_hours", DEFAULT_LOOKBACK_HOURS), 3600.0),
            float,
            0,
            False,
            MAX_LOOKBACK_HOURS,
        ),
        overlap_seconds=_number(
            "overlap_seconds",
            _duration(doc.get("overlap_seconds", DEFAULT_OVERLAP_SECONDS), 1.0),
            float,
            0,
            False,
            MAX_SECONDS,
        ),
        timeout_seconds=_number(
            "timeout_seconds",
            _duration(doc.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS), 1.0),
            float,
            0,
            maximum=MAX_SECONDS,
        ),
        max_retries=_number(
            "max_retries", doc.get("max_retries", DEFAULT_MAX_RETRIES), int, 0, False
        ),
        max_pages=_number("max_pages", doc.get("max_pages", DEFAULT_MAX_PAGES), int, 0),
        max_response_bytes=_number(
            "max_response_bytes",
            doc.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
            int,
            1023,
        ),
        max_requests_per_second=_number(
            named(
                "--max-requests-per-second", args.max_requests_per_second, "max_requests_per_second"
            ),
            pick(
                args.max_requests_per_second,
                "max_requests_per_second",
                DEFAULT_MAX_REQUESTS_PER_SECOND,
            ),
            float,
            0,
        ),
        max_jobs=_number("max_jobs", doc.get("max_jobs", DEFAULT_MAX_JOBS), int, 0),
        max_one_time_run_names=_number(
            "max_one_time_run_names",
            doc.get("max_one_time_run_names", DEFAULT_MAX_ONE_TIME_RUN_NAMES),
            int,
            0,
        ),
        run_name_patterns=_patterns(doc.get("run_name_patterns", [])),
        max_series=_number("max_series", doc.get("max_series", DEFAULT_MAX_SERIES), int, 0),
        state_file=Path(state_file) if state_file else None,
        collectors=collectors,
        prices=_prices("prices", doc.get("prices")),
        max_pool_gap_seconds=_number(
            "max_pool_gap_seconds",
            _duration(doc.get("max_pool_gap_seconds", 0), 1.0),
            float,
            0,
            False,
            MAX_SECONDS,
        ),
        date_tolerance_seconds=_number(
            "date_tolerance_seconds",
            _duration(doc.get("date_tolerance_seconds", DEFAULT_DATE_TOLERANCE_SECONDS), 1.0),
            float,
            0,
            False,
            MAX_SECONDS,
        ),
        simulate=bool(args.simulate),
        log_level=log_level,
        log_format=log_format,
        shard=shard,
        total_shards=total_shards,
    )
