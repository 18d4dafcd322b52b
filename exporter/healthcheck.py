"""The container image's HEALTHCHECK: GET /healthz on the exporter's own port, over plain HTTP
or, with --web.config.file's TLS, over HTTPS (the certificate is not checked: it is this
process's own, on loopback). /healthz needs no credentials, so basic auth does not matter.
Exit 0 when it answers 200, else 1."""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request

TIMEOUT_SECONDS = 2.0


def healthy(port: int) -> bool:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    for scheme, context in (("http", None), ("https", insecure)):
        try:
            with urllib.request.urlopen(
                f"{scheme}://127.0.0.1:{port}/healthz", timeout=TIMEOUT_SECONDS, context=context
            ) as response:
                if response.status == 200:
                    return True
        except OSError:  # refused, reset (plain HTTP on a TLS port), timeout, a TLS error
            continue
    return False


def main() -> int:
    port = int(os.environ.get("HEALTHCHECK_PORT", "9180"))
    return 0 if healthy(port) else 1


if __name__ == "__main__":
    sys.exit(main())
