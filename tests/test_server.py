"""The HTTP server under hostile clients: many scrapers, slowloris connections, odd headers."""

from __future__ import annotations

import gzip
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from conftest import sim_env

from exporter.server import negotiable_accept, wants_gzip


@pytest.fixture
def served(sim, exporter):
    proc = exporter(["--interval", "5"], sim_env(sim))
    proc.wait_ready()
    return proc


def test_head_has_headers_and_no_body_and_other_methods_are_refused(served):
    get = requests.get(served.url + "/metrics", timeout=5)
    head = requests.head(served.url + "/metrics", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) > 0
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert requests.post(served.url + "/metrics", timeout=5).status_code == 405


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        ("gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, identity", False),
        ("br;q=1, gzip;q=0.5", True),
        ("*", True),
        ("identity", False),
        ("", False),
    ],
)
def test_accept_encoding_weights_are_honoured(header, gzipped):
    assert wants_gzip(header) is gzipped


def test_a_refused_media_type_is_not_chosen(served):
    assert negotiable_accept("application/openmetrics-text;q=0, text/plain") == "text/plain"
    response = requests.get(
        served.url + "/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0; q=0, text/plain"},
        timeout=5,
    )
    assert response.headers["Content-Type"].startswith("text/plain")
    raw = requests.get(
        served.url + "/metrics", headers={"Accept-Encoding": "gzip;q=0"}, stream=True, timeout=5
    )
    assert "Content-Encoding" not in raw.headers and raw.raw.read(2) != b"\x1f\x8b"
    zipped = requests.get(
        served.url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=5
    )
    assert gzip.decompress(zipped.raw.read()).startswith(b"# HELP")


def test_five_hundred_concurrent_scrapes_all_get_complete_answers(served):
    expected = len(requests.get(served.url + "/metrics", timeout=5).content)

    def scrape(_: int) -> tuple[int, int]:
        response = requests.get(served.url + "/metrics", timeout=30)
        return response.status_code, len(response.content)

    with ThreadPoolExecutor(max_workers=250) as pool:
        results = list(pool.map(scrape, range(500)))
    assert all(status == 200 for status, _ in results)
    # Sizes may differ by the live families (health counters) only.
    assert all(abs(size - expected) < 2000 for _, size in results)


def test_two_thousand_slowloris_connections_cost_no_threads_and_scrapes_go_on(served):
    process = psutil.Process(served.proc.pid)
    threads_before = process.num_threads()
    rss_before = process.memory_info().rss
    idle: list[socket.socket] = []
    try:
        for _ in range(2000):
            s = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            idle.append(s)
        for _ in range(3):  # trickle a header byte now and then, as slowloris does
            for s in idle:
                s.sendall(b"X")
            answers = [requests.get(served.url + "/metrics", timeout=10) for _ in range(5)]
            assert all(a.status_code == 200 and a.content.startswith(b"# HELP") for a in answers)
            time.sleep(1)
        assert process.num_threads() <= threads_before + 2
        assert process.memory_info().rss - rss_before < 64 << 20
    finally:
        for s in idle:
            s.close()
