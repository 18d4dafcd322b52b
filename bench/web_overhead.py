"""What --web.config.file costs a scrape: TLS, basic auth, and both, against plain HTTP in the
same run; and what a flood of wrong passwords does to a scrape with remembered credentials.

1,000 jobs (scrape_latency's series), Prometheus 2.42's headers (OpenMetrics, gzip), one
keep-alive connection per scraper as Prometheus keeps (and, for TLS, a new connection per
scrape too: the handshake's cost). Certificates: a throwaway CA and server certificate (EC
P-256), written to a temporary folder.

Usage: python bench/web_overhead.py [--scrapes 60] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import bcrypt
import requests
from common import figures, median, percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pki import LOOPBACK, make_ca, make_cert
from scrape_latency import PROMETHEUS_HEADERS, exporter_exposition

from exporter.server import MetricsServer, make_app
from exporter.webconfig import WebConfigWatch

JOBS = 1000
PASSWORD = "bench-password"


def certificates(folder: Path) -> None:
    """ca.pem, and tls.crt / tls.key for 127.0.0.1 signed by it."""
    make_cert(folder, "tls", make_ca(folder), LOOPBACK)


def serve(folder: Path, tls: bool, auth: bool) -> tuple[MetricsServer, str]:
    web = None
    if tls or auth:
        text = ""
        if tls:
            text += "tls_server_config: {cert_file: tls.crt, key_file: tls.key}\n"
        if auth:
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
            text += f"basic_auth_users: {{prometheus: '{hashed}', scraper2: '{hashed}'}}\n"
        path = folder / f"web-{tls}-{auth}.yml"
        path.write_text(text)
        web = WebConfigWatch(path)
    app = make_app(exporter_exposition(JOBS), lambda: True, "/metrics", web)
    server = MetricsServer(app, ["127.0.0.1:0"], web)
    server.start()
    return server, f"{'https' if tls else 'http'}://127.0.0.1:{server.port}/metrics"


def scrapes(url: str, count: int, ca: str, auth: bool, fresh: bool = False) -> list[float]:
    headers = dict(PROMETHEUS_HEADERS)
    if auth:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
        )
    samples = []
    session = requests.Session()
    try:
        for _ in range(count + 1):
            if fresh:
                session.close()
                session = requests.Session()
            t = time.perf_counter()
            response = session.get(url, headers=headers, verify=ca, stream=True, timeout=60)
            body = response.raw.read(decode_content=False)
            samples.append(time.perf_counter() - t)
            assert response.status_code == 200 and body, response.status_code
    finally:
        session.close()
    return samples[1:]  # the first pays for the connection (and the first bcrypt)


def flood(url: str, stop: threading.Event, ca: str | None) -> None:
    n = 0
    with requests.Session() as session:
        while not stop.is_set():
            n += 1
            session.get(url, auth=("prometheus", f"wrong-{n}"), verify=ca or False, timeout=30)


class BasicAuthTries:
    """A second user whose hash the server knows (the same password) but whose answer it has
    never remembered: how many requests until one is checked."""

    def __init__(self, url: str) -> None:
        self.url = url

    def until_accepted(self, limit: int) -> int:
        for n in range(1, limit + 1):
            if requests.get(self.url, auth=("scraper2", PASSWORD), timeout=30).ok:
                return n
            time.sleep(0.05)
        return -1


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scrapes", type=int, default=60)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # the flood queues, on purpose
    count = 15 if args.quick else args.scrapes
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        certificates(folder)
        ca = str(folder / "ca.pem")
        cases = [
            ("plain HTTP (baseline)", False, False, False),
            ("basic auth (remembered)", False, True, False),
            ("TLS, keep-alive", True, False, False),
            ("TLS + basic auth, keep-alive", True, True, False),
            ("TLS, a handshake per scrape", True, False, True),
        ]
        for label, tls, auth, fresh in cases:
            server, url = serve(folder, tls, auth)
            try:
                samples = scrapes(url, count, ca, auth, fresh)
            finally:
                server.shutdown()
            rows.append({"case": label, "p50_s": median(samples), "p99_s": percentile(samples, 99)})
        server, url = serve(folder, False, True)
        scrapes(url, 1, ca, True)  # Prometheus was scraping before the flood: remembered
        stop = threading.Event()
        flooders = [threading.Thread(target=flood, args=(url, stop, None)) for _ in range(16)]
        try:
            for t in flooders:
                t.start()
            time.sleep(1)
            samples = scrapes(url, count, ca, True)
            # Credentials never seen before, during the flood: tries until one finds bcrypt free.
            auth = BasicAuthTries(url)
            tries = auth.until_accepted(limit=200)
            health = []
            for _ in range(count):
                t0 = time.perf_counter()
                assert requests.get(url.replace("/metrics", "/healthz"), timeout=30).ok
                health.append(time.perf_counter() - t0)
        finally:
            stop.set()
            for t in flooders:
                t.join(60)
            server.shutdown()
        rows.append(
            {
                "case": "basic auth, 16 threads flooding wrong passwords",
                "p50_s": median(samples),
                "p99_s": percentile(samples, 99),
                "healthz_p99_s": percentile(health, 99),
                "new_credentials_tries": tries,
            }
        )
    base = rows[0]["p50_s"]
    print("## What the web config costs a scrape\n")
    print(
        f"{JOBS:,} jobs, {count} scrapes per case with Prometheus 2.42's headers; ratios against "
        "plain HTTP's p50 in this run.\n"
    )
    print("| case | p50 | p99 | p50 vs plain |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {ms(r['p50_s'])} | {ms(r['p99_s'])} | {r['p50_s'] / base:.2f}x |")
    tries = rows[-1]["new_credentials_tries"]
    print(
        f"\nDuring the flood, /healthz p99 {ms(rows[-1]['healthz_p99_s'])}: wrong passwords wait "
        "for no one (one bcrypt at a time; a request that finds one running is refused at once). "
        f"Credentials never seen before were let in at try {tries} (50 ms apart; -1: not in 200)."
    )
    figures({"jobs": JOBS, "scrapes": count, "rows": rows})


if __name__ == "__main__":
    main()
