"""Authentication: token caching with the real azure-identity over TLS on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from conftest import select
from fake_aad import CLIENT, SECRET, TENANT, FakeAAD, exporter_env

from exporter.auth import DATABRICKS_SCOPE, AuthError, CachedToken, build_credential
from exporter.config import WorkspaceConfig


class FakeCredential:
    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.now = 1000.0
        self.fail = False

    def get_token(self, *scopes: str, **kw: object) -> AccessToken:
        self.calls += 1
        if self.fail:
            raise ClientAuthenticationError("AADSTS700016: application not found")
        return AccessToken(f"token-{self.calls}", int(self.now + self.lifetime))


def test_token_is_requested_once_per_lifetime_and_refreshed_before_expiry():
    cred = FakeCredential(lifetime=3600)
    requests = []
    cached = CachedToken(cred, DATABRICKS_SCOPE, lambda: requests.append(1), clock=lambda: cred.now)
    tokens = {cached.get() for _ in range(50)}
    assert tokens == {"token-1"} and len(requests) == 1
    cred.now += 3600 - 299  # inside the 5-minute refresh margin
    assert cached.get() == "token-2"
    assert len(requests) == 2


def test_failed_refresh_keeps_the_valid_token_and_a_dead_token_raises_without_secret():
    cred = FakeCredential(lifetime=600)
    cached = CachedToken(cred, DATABRICKS_SCOPE, lambda: None, clock=lambda: cred.now)
    assert cached.get() == "token-1"
    cred.fail = True
    cred.now += 400  # inside the margin, token still valid
    assert cached.get() == "token-1"
    cred.now += 400  # expired
    with pytest.raises(AuthError, match="AADSTS700016"):
        cached.get()


def test_client_secret_credential_against_fake_entra_id_over_tls(
    tmp_path: Path, monkeypatch, caplog
):
    with FakeAAD(tmp_path, SECRET) as aad:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(aad.ca_path))
        ws = WorkspaceConfig(
            name="t",
            host="https://adb-1.2.azuredatabricks.net",
            client_id=CLIENT,
            tenant_id=TENANT,
            client_secret=SECRET,
            authority_host=aad.url,
            disable_instance_discovery=True,
        )
        caplog.set_level(logging.DEBUG)
        counted = []
        cached = CachedToken(build_credential(ws), DATABRICKS_SCOPE, lambda: counted.append(1))
        tokens = {cached.get() for _ in range(50)}
        assert len(tokens) == 1
        assert len(aad.token_requests) == 1 and len(counted) == 1
        form = aad.token_requests[0]
        assert form["scope"].startswith(DATABRICKS_SCOPE.split("/")[0])
        assert form["client_id"] == CLIENT
        # azure-identity's own cache too: a second CachedToken on the same credential asks nobody.
        assert SECRET not in caplog.text


def test_wrong_client_secret_gives_a_clear_auth_error(tmp_path: Path, monkeypatch):
    with FakeAAD(tmp_path, SECRET) as aad:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(aad.ca_path))
        ws = WorkspaceConfig(
            name="t",
            host="https://x.azuredatabricks.net",
            client_id=CLIENT,
            tenant_id=TENANT,
            client_secret="wrong-secret-value",
            authority_host=aad.url,
            disable_instance_discovery=True,
        )
        cached = CachedToken(build_credential(ws), DATABRICKS_SCOPE, lambda: None)
        with pytest.raises(AuthError) as info:
            cached.get()
        assert "wrong-secret-value" not in str(info.value)
        assert "AADSTS7000215" in str(info.value) or "invalid_client" in str(info.value)


def test_exporter_process_with_service_principal_makes_one_token_request(
    tmp_path, make_sim, exporter
):
    server = make_sim()
    with FakeAAD(tmp_path, SECRET, on_token=server.tokens.add) as aad:
        proc = exporter(
            ["--interval", "0.5", "--log-level", "DEBUG"], exporter_env(server.url, aad)
        )
        proc.wait_ready()
        import time

        time.sleep(3)  # several cycles
        samples = proc.samples()
        requests_total = sum(select(samples, "databricks_exporter_api_requests_total").values())
        (tokens,) = select(samples, "databricks_exporter_token_requests_total").values()
        assert requests_total >= 10
        assert tokens == 1 and len(aad.token_requests) == 1
        proc.stop()
        output = proc.output()
        assert SECRET not in output
        for token in server.tokens:
            assert token not in output
