"""exporter-toolkit's flags and web config on the real process: basic auth, TLS, mTLS, a rotated
certificate, headers, the telemetry path, several listen addresses, JSON logs, build info."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest
import requests
from conftest import free_port, sim_env
from cryptography import x509
from pki import LOOPBACK, make_ca, make_cert

from databricks_simulator import FaultRule

PASSWORD = "s3cret-scrape-password"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca = make_ca(tmp_path)
    make_cert(tmp_path, "server", ca, LOOPBACK)
    make_cert(tmp_path, "client", ca, [x509.DNSName("prometheus.monitoring.svc")], client=True)
    make_cert(tmp_path, "stranger", ca, [x509.DNSName("someone.else")], client=True)
    other = make_ca(tmp_path, "other-ca")
    make_cert(tmp_path, "forged", other, [x509.DNSName("prometheus.monitoring.svc")], client=True)
    return tmp_path


def web_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def hashed(password: str = PASSWORD) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DATABRICKS_HOST": "https://adb-1.azuredatabricks.net"},
    )


def test_basic_auth_401_without_or_with_wrong_credentials_and_probes_stay_open(
    sim, exporter, tmp_path
):
    config = web_config(
        tmp_path,
        f"basic_auth_users:\n  prometheus: '{hashed()}'\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        "    X-Frame-Options: deny\n",
    )
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    proc.wait_ready()  # /readyz without credentials: the probes' way in
    assert requests.get(proc.url + "/healthz", timeout=5).status_code == 200
    for auth in (None, ("prometheus", "wrong"), ("nobody", PASSWORD)):
        denied = requests.get(proc.url + "/metrics", auth=auth, timeout=5)
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"] == "Basic"
        assert denied.text == "Unauthorized\n"  # never says which part was wrong
        assert denied.headers["X-Frame-Options"] == "deny"
    assert requests.get(proc.url + "/", timeout=5).status_code == 401
    ok = requests.get(proc.url + "/metrics", auth=("prometheus", PASSWORD), timeout=5)
    assert ok.status_code == 200 and "databricks_job_runs_total" in ok.text
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    assert "databricks_exporter_web_config_last_reload_successful 1.0" in ok.text
    assert PASSWORD not in proc.output()


def test_tls_with_a_private_ca_and_plain_http_refused(sim, exporter, pki):
    config = web_config(
        pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )  # relative paths: from the web config's folder, as exporter-toolkit reads them
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    url = f"https://127.0.0.1:{proc.port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            response = requests.get(url + "/readyz", verify=str(pki / "ca.pem"), timeout=5)
            if response.status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.2)
    scrape = requests.get(url + "/metrics", verify=str(pki / "ca.pem"), timeout=5)
    assert scrape.status_code == 200 and "databricks_exporter_build_info" in scrape.text
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/metrics", timeout=5)  # a CA it does not know
    with pytest.raises(requests.ConnectionError):
        requests.get(proc.url + "/metrics", timeout=5)  # plain HTTP on the TLS port
    assert "https://127.0.0.1:" in proc.output()


def test_a_silent_client_does_not_hold_up_the_next_handshake(sim, exporter, pki):
    config = web_config(
        pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    url = f"https://127.0.0.1:{proc.port}"
    ca = str(pki / "ca.pem")
    _wait_https(url, ca, proc)
    silent = [socket.create_connection(("127.0.0.1", proc.port)) for _ in range(20)]
    try:  # 20 connections that never send a ClientHello; the scrape is served meanwhile
        assert requests.get(url + "/metrics", verify=ca, timeout=5).status_code == 200
    finally:
        for s in silent:
            s.close()


def _wait_https(url: str, ca: str, proc, cert: tuple[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/healthz", verify=ca, cert=cert, timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.2)


def test_mtls_requires_a_certificate_from_the_client_ca_with_an_allowed_san(sim, exporter, pki):
    config = web_config(
        pki,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
        "  client_allowed_sans: [prometheus.monitoring.svc]\n  min_version: TLS13\n",
    )
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    url, ca = f"https://127.0.0.1:{proc.port}", str(pki / "ca.pem")
    client = (str(pki / "client.crt"), str(pki / "client.key"))
    _wait_https(url, ca, proc, client)
    assert requests.get(url + "/metrics", verify=ca, cert=client, timeout=5).status_code == 200
    for who in ("forged", None, "stranger"):  # another CA's, none, a SAN not allowed
        cert = (str(pki / f"{who}.crt"), str(pki / f"{who}.key")) if who else None
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url + "/metrics", verify=ca, cert=cert, timeout=5)
    assert proc.proc.poll() is None  # refused, not crashed: the good client still gets in
    assert requests.get(url + "/metrics", verify=ca, cert=client, timeout=5).status_code == 200
    tls12 = ssl.create_default_context(cafile=ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    tls12.load_cert_chain(*client)
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", proc.port)) as raw:
        tls12.wrap_socket(raw, server_hostname="127.0.0.1")  # below min_version


def _served_serial(port: int, ca: str) -> int:
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_rotated_certificate_is_served_without_a_restart(sim, exporter, pki):
    config = web_config(
        pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    url, ca = f"https://127.0.0.1:{proc.port}", str(pki / "ca.pem")
    _wait_https(url, ca, proc)
    first = _served_serial(proc.port, ca)
    # cert-manager's way: new files in place (here a rename each, as a Secret volume swaps).
    staging = pki / "next"
    staging.mkdir()
    new_ca = make_ca(staging, "ca")  # a new CA too: the old CA must not verify the new cert
    rotated = make_cert(staging, "server", new_ca, LOOPBACK)
    (staging / "server.key").replace(pki / "server.key")
    (staging / "server.crt").replace(pki / "server.crt")
    new_ca_file = str(staging / "ca.pem")
    deadline = time.monotonic() + 20
    while True:
        try:
            if _served_serial(proc.port, new_ca_file) == rotated.serial_number:
                break
        except ssl.SSLError:
            pass  # still the old certificate
        assert time.monotonic() < deadline, f"still serving {first}\n{proc.output()}"
        time.sleep(0.3)
    assert proc.proc.poll() is None
    assert requests.get(url + "/metrics", verify=new_ca_file, timeout=5).status_code == 200
    assert "reloaded" in proc.output()


def test_a_change_that_does_not_load_keeps_the_last_valid_config(sim, exporter, tmp_path):
    config = web_config(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed()}'\n")
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    proc.wait_ready()
    config.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    deadline = time.monotonic() + 20
    while "web config not reloaded" not in proc.output():  # read again as requests come
        assert time.monotonic() < deadline, proc.output()
        requests.get(proc.url + "/healthz", timeout=5)
        time.sleep(0.3)
    body = requests.get(proc.url + "/metrics", auth=("prometheus", PASSWORD), timeout=5).text
    assert "databricks_exporter_web_config_last_reload_successful 0.0" in body
    assert requests.get(proc.url + "/metrics", timeout=5).status_code == 401


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("basic_auth_users:\n  prometheus: plaintext\n", "basic_auth_users.prometheus"),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "missing.crt"),
        ("tls_server_config:\n  cert_file: a.crt\n", "key_file"),
        ("tls_config:\n  cert_file: a.crt\n", "tls_config"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAnyClientCert\n",
            "RequireAnyClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.pem\n",
            "client_auth_type",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n",
            "min_version",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [X25519]\n",
            "curve_preferences",
        ),
        ("http_server_config:\n  headers:\n    Server: me\n", "Server"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options"),
        ("basic_auth_users: [a, b]\n", "basic_auth_users"),
        ("rate_limit:\n  interval: soon\n", "rate_limit.interval"),
        ("{", "not valid YAML"),
        (ALIAS_BOMB, "aliases"),  # 10^9 values: refused before they are expanded
    ],
)
def test_a_bad_web_config_exits_2_with_one_line_naming_it(tmp_path, text, named):
    result = run_cli("--web.config.file", str(web_config(tmp_path, text)))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "web.yml" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_rate_limit_answers_429_past_the_burst(sim, exporter, tmp_path):
    config = web_config(tmp_path, "rate_limit:\n  interval: 1h\n  burst: 3\n")
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    proc.wait_healthy()
    codes = [requests.get(proc.url + "/metrics", timeout=5).status_code for _ in range(5)]
    assert codes[-1] == 429 and codes.count(429) >= 2
    # The probes are never limited: a busy scraper must not get the pod restarted.
    assert [requests.get(proc.url + "/healthz", timeout=5).status_code for _ in range(5)] == [
        200
    ] * 5


def test_telemetry_path_and_several_listen_addresses(sim, tmp_path):
    ports = [free_port(), free_port()]
    addresses = [f"127.0.0.1:{ports[0]}"]
    ipv6 = socket.has_ipv6
    if ipv6:
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
            addresses.append(f"[::1]:{ports[1]}")
        except OSError:
            ipv6 = False
    args = [a for address in addresses for a in ("--web.listen-address", address)]
    log = (tmp_path / "exporter.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args, "--web.telemetry-path", "/custom/metrics"],
        env={**sim_env(sim), "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        urls = [f"http://127.0.0.1:{ports[0]}"] + ([f"http://[::1]:{ports[1]}"] if ipv6 else [])
        for url in urls:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(url + "/healthz", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "exporter.log").read_text()
                time.sleep(0.2)
            assert requests.get(url + "/custom/metrics", timeout=5).status_code == 200
            assert requests.get(url + "/metrics", timeout=5).status_code == 404
            assert 'href="/custom/metrics"' in requests.get(url + "/", timeout=5).text
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_json_logs_carry_workspace_collector_and_endpoint_and_no_secret(make_sim, exporter):
    server = make_sim()
    # A 403 fails the cycle: its error line names the endpoint (retried 5xx are not logged).
    server.add_faults(FaultRule(path_prefix="/api/2.2/jobs/runs/list", status=403, count=3))
    env = sim_env(server)
    # DEBUG: urllib3's and the exporter's own request logging too, every line still JSON
    proc = exporter(["--interval", "1", "--log.format", "json", "--log.level", "DEBUG"], env)
    proc.wait_ready()
    deadline = time.monotonic() + 30
    while True:
        lines = [json.loads(line) for line in proc.output().splitlines() if line.strip()]
        with_endpoint = [
            r
            for r in lines
            if r.get("endpoint") == "/api/2.2/jobs/runs/list" and r["level"] in ("WARN", "ERROR")
        ]
        if with_endpoint:
            break
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.3)
    for record in lines:
        assert {"time", "level", "logger", "msg"} <= set(record), record
        assert record["time"].endswith("Z") and record["level"] in (
            "DEBUG",
            "INFO",
            "WARN",
            "ERROR",
        )
    record = with_endpoint[0]
    assert record["workspace"]  # the workspace's name, as the metrics' workspace label
    assert record["collector"] == "runs" and "403" in record["msg"]
    assert server.token not in proc.output()


def test_logfmt_is_the_default_and_quotes_what_needs_quoting(sim, exporter):
    proc = exporter(["--interval", "5"], sim_env(sim))
    proc.wait_ready()
    first = proc.output().splitlines()[0]
    assert first.startswith("time=") and " level=" in first and ' msg="' in first


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus)")
def test_build_info_and_process_metrics_and_promtool_stays_clean(sim, exporter):
    proc = exporter(["--interval", "5"], sim_env(sim))
    proc.wait_ready()
    text = proc.metrics_text()
    (info,) = [
        line for line in text.splitlines() if line.startswith("databricks_exporter_build_info{")
    ]
    assert 'version="' in info and 'python_version="3.' in info and info.endswith(" 1.0")
    for family in ("process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert f"\n{family}" in text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_images_healthcheck_passes_over_http_and_over_tls(sim, exporter, pki):
    from exporter.healthcheck import healthy

    plain = exporter(["--interval", "5"], sim_env(sim))
    plain.wait_healthy()
    assert healthy(plain.port)
    config = web_config(
        pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    tls = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    _wait_https(f"https://127.0.0.1:{tls.port}", str(pki / "ca.pem"), tls)
    assert healthy(tls.port)
    assert not healthy(free_port())  # nothing listens there


def test_a_secret_volumes_symlink_swap_and_new_users_are_picked_up(sim, exporter, pki):
    # Kubernetes mounts a Secret as <dir>/..data -> ..<timestamp>/ with each key a symlink
    # through ..data; an update writes a new timestamped folder and swaps ..data at once.
    volume = pki / "volume"
    first = volume / "..2026_12_01_00_00_00.1"
    first.mkdir(parents=True)
    for name in ("server.crt", "server.key"):
        (first / name).write_bytes((pki / name).read_bytes())
    (first / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  old: '{hashed()}'\n"
    )
    (volume / "..data").symlink_to(first.name)
    for name in ("server.crt", "server.key", "web.yml"):
        (volume / name).symlink_to(f"..data/{name}")
    proc = exporter(["--interval", "5", "--web.config.file", str(volume / "web.yml")], sim_env(sim))
    url, ca = f"https://127.0.0.1:{proc.port}", str(pki / "ca.pem")
    _wait_https(url, ca, proc)
    assert requests.get(url + "/metrics", verify=ca, auth=("old", PASSWORD), timeout=5).ok
    second = volume / "..2026_12_02_00_00_00.2"
    second.mkdir()
    new_ca = make_ca(second, "ca")
    rotated = make_cert(second, "server", new_ca, LOOPBACK)
    (second / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  new: '{hashed()}'\n"
    )
    (volume / "..data_tmp").symlink_to(second.name)
    (volume / "..data_tmp").replace(volume / "..data")  # the atomic swap
    new_ca_file = str(second / "ca.pem")
    deadline = time.monotonic() + 20
    while True:
        try:
            if _served_serial(proc.port, new_ca_file) == rotated.serial_number:
                break
        except ssl.SSLError:
            pass
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.3)
    assert requests.get(url + "/metrics", verify=new_ca_file, auth=("new", PASSWORD), timeout=5).ok
    old = requests.get(url + "/metrics", verify=new_ca_file, auth=("old", PASSWORD), timeout=5)
    assert old.status_code == 401  # a user taken out of the file is out at once


def test_connections_reset_after_the_handshake_leave_nothing_behind(sim, exporter, pki):
    import struct

    import psutil

    config = web_config(
        pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    url, ca = f"https://127.0.0.1:{proc.port}", str(pki / "ca.pem")
    _wait_https(url, ca, proc)
    process = psutil.Process(proc.proc.pid)
    before = process.num_fds()
    context = ssl.create_default_context(cafile=ca)
    for _ in range(100):  # handshake, send half a request, then RST (SO_LINGER 0)
        raw = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        tls.close()
    deadline = time.monotonic() + 10  # well under waitress's 15 s idle timeout
    while process.num_fds() > before + 5:
        assert time.monotonic() < deadline, f"{process.num_fds()} fds, {before} before"
        time.sleep(0.2)
    assert requests.get(url + "/metrics", verify=ca, timeout=5).status_code == 200
    assert "Task was destroyed" not in proc.output() and "ERROR" not in proc.output()


def test_sigterm_with_tls_connections_open_exits_cleanly_and_removes_its_socket_folder(
    sim, exporter, pki
):
    import glob
    import signal

    config = web_config(
        pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    before = set(glob.glob("/tmp/databricks-exporter-*"))
    proc = exporter(["--interval", "5", "--web.config.file", str(config)], sim_env(sim))
    url, ca = f"https://127.0.0.1:{proc.port}", str(pki / "ca.pem")
    _wait_https(url, ca, proc)
    ours = set(glob.glob("/tmp/databricks-exporter-*")) - before
    assert len(ours) == 1 and oct(Path(next(iter(ours))).stat().st_mode)[-3:] == "700"
    idle = [socket.create_connection(("127.0.0.1", proc.port)) for _ in range(5)]
    try:
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        for s in idle:
            s.close()
    assert not any(Path(p).exists() for p in ours)
    assert "Task was destroyed" not in proc.output()


def test_tls_front_shutdown_ends_connections_still_in_their_handshake(pki):
    """Connections that connected and sent nothing are asyncio's own tasks (in their TLS
    handshake, no handler yet); shutdown ends them too, so none is left pending when the
    loop closes (each would log "Task was destroyed but it is pending!" when collected)."""
    import asyncio
    import time as _time

    from exporter.tlsfront import TLSFront
    from exporter.webconfig import WebConfigWatch

    config = web_config(
        pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    listener = socket.create_server(("127.0.0.1", 0))
    front = TLSFront([listener], str(pki / "nowhere.sock"), WebConfigWatch(config), 64)
    front.start()
    port = listener.getsockname()[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        deadline = _time.monotonic() + 5
        while _time.monotonic() < deadline:  # until the loop has accepted them all
            handshakes = [
                t
                for t in asyncio.all_tasks(front._loop)
                if "_accept_connection2" in repr(t.get_coro())
            ]
            if len(handshakes) == 5:
                break
            _time.sleep(0.05)
        assert len(handshakes) == 5
        front.shutdown()
        assert not [t for t in asyncio.all_tasks(front._loop) if not t.done()]
    finally:
        for s in idle:
            s.close()
        listener.close()
