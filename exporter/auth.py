"""Azure AD (Entra ID) and PAT authentication for requests, one credential per workspace.

Order, first match wins: a personal access token; a service principal (client id, tenant id,
secret); azure-identity's DefaultAzureCredential (workload identity, managed identity, Azure CLI).
Tokens are cached here until azure-identity's refresh time (5 minutes before expiry), the same
policy as azure-core's BearerTokenCredentialPolicy, so a collection makes no token request at
all in steady state, whichever credential sits behind it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError

from exporter.health import WorkspaceHealth
from exporter.redact import RedactingFilter

if TYPE_CHECKING:
    from exporter.config import WorkspaceConfig

log = logging.getLogger(__name__)

DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"
MANAGEMENT_SCOPE = "https://management.core.windows.net//.default"
REFRESH_MARGIN_SECONDS = 300.0
RETRY_DELAY_SECONDS = 30.0
FORCED_REFRESH_MIN_SECONDS = 300.0  # a workspace that keeps answering 401 costs one token per 5 min
TOKEN_DEADLINE_SECONDS = 30.0  # a whole token request, retries of azure-identity included


class AuthError(Exception):
    """No token could be obtained; the message says from where and why, never the secret."""


class TokenTimeout(Exception):
    """Entra ID did not answer a token request within the deadline."""


def build_credential(ws: WorkspaceConfig) -> TokenCredential:
    """The azure-identity credential for a workspace without a PAT."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    common: dict[str, Any] = {}
    if ws.authority_host:
        common["authority"] = ws.authority_host
    if ws.client_id and ws.tenant_id and ws.client_secret:
        return ClientSecretCredential(
            ws.tenant_id,
            ws.client_id,
            ws.client_secret,
            disable_instance_discovery=ws.disable_instance_discovery,
            **common,
        )
    if ws.client_id:
        common["managed_identity_client_id"] = ws.client_id
        common["workload_identity_client_id"] = ws.client_id
    if ws.tenant_id:
        common["workload_identity_tenant_id"] = ws.tenant_id
    return DefaultAzureCredential(exclude_interactive_browser_credential=True, **common)


def describe(ws: WorkspaceConfig) -> str:
    """Which authentication method a workspace uses, for the startup log line."""
    if ws.token:
        return "personal access token"
    if ws.client_id and ws.tenant_id and ws.client_secret:
        return f"service principal {ws.client_id}"
    return "azure-identity default chain (workload identity, managed identity, Azure CLI)"


class CachedToken:
    """One scope's token from one credential, requested again only near its expiry."""

    def __init__(
        self,
        credential: TokenCredential,
        scope: str,
        on_request: Callable[[], None],
        clock: Callable[[], float] = time.time,
        deadline_seconds: float = TOKEN_DEADLINE_SECONDS,
    ) -> None:
        self._credential = credential
        self._deadline = deadline_seconds
        self._pending: threading.Thread | None = None  # a token request that has not answered
        self._scope = scope
        self._on_request = on_request
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._next_check = 0.0
        self._force = False
        self._last_forced = float("-inf")

    def get(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._next_check:
                self._refresh(now)
            assert self._token is not None
            return self._token.token

    def invalidate(self) -> None:
        """The API rejected the token (revoked?): bypass azure-identity's cache once."""
        with self._lock:
            now = self._clock()
            if now - self._last_forced >= FORCED_REFRESH_MIN_SECONDS:
                self._force = True
                self._last_forced = now
                self._next_check = 0.0

    def _fetch(self, now: float) -> AccessToken:
        """The credential's answer within the deadline, or TokenTimeout.

        azure-core's own timeouts bound each socket read, not the request: an Entra ID that
        accepts the connection and trickles (or never answers) would hold this lock, and every
        collection of the workspace behind it, for as long as it likes. The request runs in a
        thread of its own; past the deadline it is left to finish (or fail) alone, and no
        second one is started while it is still out.
        """
        if self._pending is not None and self._pending.is_alive():
            raise TokenTimeout("the previous token request has still not answered")
        box: list[Any] = []

        def request() -> None:
            try:
                box.append(self._request(now))
            except BaseException as exc:  # handed to the waiting thread
                box.append(exc)

        worker = threading.Thread(target=request, name=f"token {self._scope[:8]}", daemon=True)
        worker.start()
        worker.join(self._deadline)
        if worker.is_alive():
            self._pending = worker
            raise TokenTimeout(f"no answer within {self._deadline:g}s")
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _request(self, now: float) -> AccessToken:
        if not self._force:
            return self._credential.get_token(self._scope)
        self._force = False
        # A claims challenge makes MSAL skip its cache, as after a CAE revocation.
        nbf = {"essential": True, "value": str(int(now))}
        claims = json.dumps({"access_token": {"nbf": nbf}}, separators=(",", ":"))
        try:
            return self._credential.get_token(self._scope, claims=claims)
        except TypeError:  # a credential without claims support
            return self._credential.get_token(self._scope)

    def _refresh(self, now: float) -> None:
        try:
            token = self._fetch(now)
        except (ClientAuthenticationError, TokenTimeout) as exc:
            self._on_request()
            if self._token is not None and now < self._token.expires_on - 30:
                log.warning("token refresh failed, using the current token: %s", _first_line(exc))
                self._next_check = now + RETRY_DELAY_SECONDS
                return
            raise AuthError(f"Azure AD token for {self._scope}: {_first_line(exc)}") from None
        except Exception as exc:  # azure-identity raises several kinds; all are auth failures here
            self._on_request()
            raise AuthError(f"Azure AD token for {self._scope}: {_first_line(exc)}") from None
        if self._token is None or token.token != self._token.token:
            self._on_request()
            RedactingFilter.instance().rotate(f"token:{id(self)}", token.token)
        self._token = token
        refresh_at = token.expires_on - REFRESH_MARGIN_SECONDS
        # A token that is already inside the margin is used, and asked for again shortly.
        self._next_check = max(refresh_at, now + RETRY_DELAY_SECONDS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class DatabricksAuth(requests.auth.AuthBase):
    """Adds the bearer token (and the SP management headers when configured) to a request."""

    def __init__(
        self,
        ws: WorkspaceConfig,
        health: WorkspaceHealth,
        token_deadline_seconds: float = TOKEN_DEADLINE_SECONDS,
    ) -> None:
        self._static: str | None = ws.token
        self._token: CachedToken | None = None
        self._mgmt: CachedToken | None = None
        self._resource_id = ws.azure_resource_id
        if ws.token:
            RedactingFilter.instance().add(ws.token)
            return
        credential = build_credential(ws)
        count = health.count_token_request
        deadline = token_deadline_seconds
        self._token = CachedToken(credential, DATABRICKS_SCOPE, count, deadline_seconds=deadline)
        if ws.azure_resource_id:
            self._mgmt = CachedToken(credential, MANAGEMENT_SCOPE, count, deadline_seconds=deadline)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._static is not None:
            request.headers["Authorization"] = f"Bearer {self._static}"
            return request
        assert self._token is not None
        request.headers["Authorization"] = f"Bearer {self._token.get()}"
        if self._mgmt is not None and self._resource_id:
            request.headers["X-Databricks-Azure-Workspace-Resource-Id"] = self._resource_id
            request.headers["X-Databricks-Azure-SP-Management-Token"] = self._mgmt.get()
        return request

    def invalidate(self) -> None:
        """Forget cached tokens (after a 401), so the next request asks azure-identity again."""
        for cached in (self._token, self._mgmt):
            if cached is not None:
                cached.invalidate()

    def __repr__(self) -> str:
        return "DatabricksAuth(***)"
