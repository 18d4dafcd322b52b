"""A fake Entra ID (Azure AD) token endpoint over TLS on loopback, with its own test CA."""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from loopback import Loopback, QuietHandler
from pki import LOOPBACK, make_ca, make_cert


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert, key)."""
    ca = make_ca(directory)
    make_cert(directory, "server", ca, [*LOOPBACK, x509.DNSName("localhost")])
    return directory / "ca.pem", directory / "server.crt", directory / "server.key"


class FakeAAD(Loopback):
    """Serves openid-configuration and the v2.0 token endpoint; counts token requests."""

    def __init__(
        self,
        directory: Path,
        client_secret: str,
        expires_in: int = 3600,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        self.ca_path, cert, key = make_tls_files(directory)
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.on_token = on_token
        self.token_requests: list[dict[str, str]] = []
        self.fail_next = 0
        self.fail_status = 503
        self.stall = False  # accept token requests and never answer them (until stopped)
        self._released = threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._listen(self._handler(), tls=context)
        self.url = f"https://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        aad = self

        class Handler(QuietHandler):
            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                tenant = parts[0]
                if self.path.endswith("/v2.0/.well-known/openid-configuration"):
                    base = f"{aad.url}/{tenant}"
                    self._json(
                        200,
                        {
                            "token_endpoint": f"{base}/oauth2/v2.0/token",
                            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                            "issuer": f"{base}/v2.0",
                            "tenant_region_scope": None,
                        },
                    )
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if not self.path.endswith("/oauth2/v2.0/token"):
                    self._json(404, {"error": "not_found"})
                    return
                aad.token_requests.append(form)
                if aad.stall:
                    aad._released.wait(120)
                    self.close_connection = True
                    return
                if aad.fail_next > 0:
                    aad.fail_next -= 1
                    self._json(
                        aad.fail_status,
                        {"error": "temporarily_unavailable", "error_description": "AAD is down"},
                    )
                    return
                if form.get("client_secret") != aad.client_secret:
                    self._json(
                        401,
                        {
                            "error": "invalid_client",
                            "error_description": "AADSTS7000215: Invalid client secret provided.",
                        },
                    )
                    return
                token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(24)
                if aad.on_token:
                    aad.on_token(token)
                self._json(
                    200,
                    {
                        "token_type": "Bearer",
                        "expires_in": aad.expires_in,
                        "ext_expires_in": aad.expires_in,
                        "access_token": token,
                    },
                )

        return Handler

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        super().__exit__(*exc)


TENANT = "00000000-0000-0000-0000-0000000000aa"
CLIENT = "00000000-0000-0000-0000-000000000001"
SECRET = "sp-secret-Zq8~not-for-logs"


def exporter_env(workspace_url: str, aad: FakeAAD) -> dict[str, str]:
    """The environment of an exporter that authenticates as a service principal against ``aad``."""
    return {
        "DATABRICKS_HOST": workspace_url,
        "AZURE_CLIENT_ID": CLIENT,
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_SECRET": SECRET,
        "AZURE_AUTHORITY_HOST": aad.url,
        "AZURE_DISABLE_INSTANCE_DISCOVERY": "true",
        "REQUESTS_CA_BUNDLE": str(aad.ca_path),
    }
