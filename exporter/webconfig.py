"""``--web.config.file``: exporter-toolkit's web configuration (TLS, mTLS, basic auth, headers).

The file is the one every prometheus-community exporter reads (docs/web-configuration.md of
prometheus/exporter-toolkit), so a Prometheus scrape config and a Helm chart written for them
work here unchanged. What Python's ``ssl`` cannot do is refused in one line naming the key, not
ignored: ``curve_preferences``, and the two client-certificate policies that accept a
certificate without verifying it.

``WebConfigWatch`` re-reads the file, and the certificate files it names, when they change on
disk (cert-manager rotates certificates; Kubernetes swaps a mounted Secret's files at once). A
change that does not load is logged and the last valid configuration stays in force, so a
half-written certificate never takes the endpoint down; ``reload_ok`` says which.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import re
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from exporter.config import (
    _duration,  # the durations Prometheus users write ("100ms", "1s")
    parse_yaml,
    read_text,
)

log = logging.getLogger(__name__)


class WebConfigError(Exception):
    """The web config file is unreadable or invalid; the message names the file and key."""


TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's crypto/tls policies -> ssl's. RequestClientCert and RequireAnyClientCert accept a client
# certificate without verifying it, which OpenSSL through Python's ssl cannot express (and
# exporter-toolkit itself calls insecure): refused with the policy to use instead.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go's names of the TLS 1.2 suites crypto/tls offers -> OpenSSL's (TLS 1.3 suites are fixed).
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}
# The response headers exporter-toolkit lets a web config set, with the values it accepts.
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
TLS_KEYS = {
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
}
BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
BCRYPT_MAX_BYTES = 72  # bcrypt reads this much of a password, as Go's does
CHECK_EVERY_SECONDS = 1.0  # how often the files' modification times are looked at


@dataclass(frozen=True)
class TLSSettings:
    """``tls_server_config``, validated; file paths made absolute against the config's folder."""

    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    client_ca_file: str | None = None
    client_ca: str | None = field(default=None, repr=False)
    client_auth: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


@dataclass(frozen=True)
class RateLimit:
    interval_seconds: float
    burst: int


@dataclass(frozen=True)
class WebConfig:
    tls: TLSSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: RateLimit | None = None


def _mapping(where: str, raw: Any, keys: set[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError(f"{where}: expected a mapping")
    unknown = set(raw) - keys
    if unknown:
        raise WebConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    return raw


def _string(where: str, raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise WebConfigError(f"{where}: expected text")
    return raw


def _strings(where: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        raise WebConfigError(f"{where}: expected a list of strings")
    return tuple(raw)


def _tls(where: str, raw: Any, folder: Path) -> TLSSettings | None:
    conf = _mapping(where, raw, TLS_KEYS)
    enabling = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file")
    if not any(conf.get(k) for k in (*enabling, "client_auth_type")):
        return None  # as exporter-toolkit: versions or suites alone do not turn TLS on

    def path(key: str) -> str | None:
        value = _string(f"{where}.{key}", conf.get(key))
        return None if value is None else str(folder / value)

    if conf.get("curve_preferences"):
        raise WebConfigError(
            f"{where}.curve_preferences: not supported here (Python's ssl module cannot set a "
            "list of curves); remove it to use OpenSSL's defaults"
        )
    tls = TLSSettings(
        cert_file=path("cert_file"),
        key_file=path("key_file"),
        cert=_string(f"{where}.cert", conf.get("cert")),
        key=_string(f"{where}.key", conf.get("key")),
        client_ca_file=path("client_ca_file"),
        client_ca=_string(f"{where}.client_ca", conf.get("client_ca")),
        client_auth=_string(f"{where}.client_auth_type", conf.get("client_auth_type"))
        or "NoClientCert",
        client_allowed_sans=_strings(
            f"{where}.client_allowed_sans", conf.get("client_allowed_sans")
        ),
        min_version=_string(f"{where}.min_version", conf.get("min_version")) or "TLS12",
        max_version=_string(f"{where}.max_version", conf.get("max_version")) or "TLS13",
        cipher_suites=_strings(f"{where}.cipher_suites", conf.get("cipher_suites")),
        prefer_server_cipher_suites=conf.get("prefer_server_cipher_suites", True) is not False,
    )
    if (tls.cert_file is None) == (tls.cert is None):
        raise WebConfigError(f"{where}: give one of cert_file or cert (the server certificate)")
    if (tls.key_file is None) == (tls.key is None):
        raise WebConfigError(f"{where}: give one of key_file or key (the certificate's key)")
    if tls.client_ca_file is not None and tls.client_ca is not None:
        raise WebConfigError(f"{where}: give client_ca_file or client_ca, not both")
    if tls.client_auth in UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(
            f"{where}.client_auth_type: {tls.client_auth} accepts client certificates without "
            "verifying them, which this exporter does not do; use RequireAndVerifyClientCert "
            "(or VerifyClientCertIfGiven) with client_ca_file"
        )
    if tls.client_auth not in CLIENT_AUTH:
        raise WebConfigError(
            f"{where}.client_auth_type: expected one of {', '.join(CLIENT_AUTH)}, "
            f"got {tls.client_auth!r}"
        )
    has_ca = tls.client_ca_file is not None or tls.client_ca is not None
    if tls.client_auth != "NoClientCert" and not has_ca:
        raise WebConfigError(f"{where}: {tls.client_auth} needs client_ca_file (or client_ca)")
    if has_ca and tls.client_auth == "NoClientCert":
        raise WebConfigError(
            f"{where}: client CAs are configured without client_auth_type "
            "(RequireAndVerifyClientCert to require client certificates)"
        )
    for key in ("min_version", "max_version"):
        if getattr(tls, key) not in TLS_VERSIONS:
            raise WebConfigError(
                f"{where}.{key}: expected one of {', '.join(TLS_VERSIONS)}, "
                f"got {getattr(tls, key)!r}"
            )
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        raise WebConfigError(f"{where}: min_version is above max_version")
    unknown = [c for c in tls.cipher_suites if c not in CIPHER_SUITES]
    if unknown:
        raise WebConfigError(
            f"{where}.cipher_suites: unknown suite(s) {', '.join(unknown)} "
            "(Go's crypto/tls names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
        )
    return tls


def _users(where: str, raw: Any) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError(f"{where}: expected a mapping of user names to bcrypt hashes")
    users = {}
    for user, hashed in raw.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{where}: user names are non-empty text without ':'")
        # The hash's shape, as Go's bcrypt.Cost parses it; no bcrypt is run to load the file
        # (a reload on the TLS front's thread must not stall handshakes for a second a user).
        if not isinstance(hashed, str) or not BCRYPT_HASH.match(hashed):
            raise WebConfigError(
                f"{where}.{user}: not a bcrypt hash (make one with: htpasswd -nBC 10 '' | "
                "tr -d ':\\n')"
            )
        users[user] = hashed.encode()
    return users


def _headers(where: str, raw: Any) -> tuple[tuple[str, str], ...]:
    conf = _mapping(where, raw, set(HEADERS))
    out = []
    for name, value in conf.items():
        text = _string(f"{where}.{name}", value)
        if text is None:
            continue
        allowed = HEADERS[name]
        if allowed is not None and text.lower() not in allowed:
            raise WebConfigError(f"{where}.{name}: expected one of {', '.join(allowed)}")
        if any(c in text for c in "\r\n\x00"):
            raise WebConfigError(f"{where}.{name}: a header value is one line")
        out.append((name, text))
    return tuple(out)


def _rate_limit(where: str, raw: Any) -> RateLimit | None:
    conf = _mapping(where, raw, {"interval", "burst"})
    if not conf:
        return None
    interval = _duration(conf.get("interval", 0), 1.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        raise WebConfigError(f"{where}.interval: expected a duration such as 100ms or 1s")
    burst = conf.get("burst", 1)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise WebConfigError(f"{where}.burst: expected a whole number >= 1")
    return RateLimit(float(interval), burst) if interval > 0 else None


def parse_web_config(text: str, folder: Path, name: str = "--web.config.file") -> WebConfig:
    conf = _mapping(name, parse_yaml(name, text, WebConfigError), TOP_KEYS)
    http = _mapping(
        f"{name}: http_server_config", conf.get("http_server_config"), {"http2", "headers"}
    )
    return WebConfig(
        tls=_tls(f"{name}: tls_server_config", conf.get("tls_server_config"), folder),
        users=_users(f"{name}: basic_auth_users", conf.get("basic_auth_users")),
        headers=_headers(f"{name}: http_server_config.headers", http.get("headers")),
        rate_limit=_rate_limit(f"{name}: rate_limit", conf.get("rate_limit")),
    )


def load_web_config(path: Path) -> WebConfig:
    text = read_text("--web.config.file", path, WebConfigError)
    return parse_web_config(text, path.parent, f"--web.config.file {path}")


def tls_context(tls: TLSSettings, name: str = "--web.config.file") -> ssl.SSLContext:
    """The server context for ``tls``; WebConfigError naming the file that does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.cipher_suites:
        try:
            context.set_ciphers(":".join(CIPHER_SUITES[c] for c in tls.cipher_suites))
        except ssl.SSLError:
            raise WebConfigError(
                f"{name}: tls_server_config.cipher_suites: none of them is available here"
            ) from None
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        else:
            _load_inline_chain(context, tls.cert or "", tls.key or "")
    except (OSError, ssl.SSLError) as exc:
        what = f"{tls.cert_file} / {tls.key_file}" if tls.cert_file else "cert / key"
        raise WebConfigError(
            f"{name}: tls_server_config: cannot load the certificate and key ({what}): "
            f"{getattr(exc, 'strerror', None) or getattr(exc, 'reason', None) or exc}"
        ) from None
    context.verify_mode = CLIENT_AUTH[tls.client_auth]
    if tls.client_ca_file is not None or tls.client_ca is not None:
        try:
            if tls.client_ca_file is not None:
                context.load_verify_locations(cafile=tls.client_ca_file)
            else:
                context.load_verify_locations(cadata=tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"{name}: tls_server_config: cannot load the client CA "
                f"({tls.client_ca_file or 'client_ca'}): "
                f"{getattr(exc, 'strerror', None) or getattr(exc, 'reason', None) or exc}"
            ) from None
    return context


def _load_inline_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    """ssl loads a chain from files only: the inline PEMs go through a private temp folder."""
    with tempfile.TemporaryDirectory(prefix="databricks-exporter-tls-") as folder:
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        context.load_cert_chain(cert_path, key_path)


def _same_name(value: str) -> str:
    """An IP address in one spelling (OpenSSL writes 0:0:0:0:0:0:0:1, Go and people ::1)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def peer_allowed(peercert: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    """Whether a verified client certificate has a SAN (DNS, IP, email, URI) in ``allowed``.
    A client without a certificate passes here: the handshake already refused it when one is
    required (RequireAndVerifyClientCert); with VerifyClientCertIfGiven it may come without."""
    if not allowed or not peercert:
        return True
    names = {_same_name(a) for a in allowed}
    sans = [value for _kind, value in peercert.get("subjectAltName", ())]
    return any(_same_name(san) in names for san in sans)


# exporter-toolkit's hash of "fakepassword": an unknown user costs one bcrypt like a known one,
# so timing does not tell which user names exist.
FAKE_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
AUTH_CACHE_SIZE = 256


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes. Credentials that passed are
    remembered by a digest of (user, hash, password), so Prometheus' scrape every 15 s costs no
    bcrypt and never waits; refusals are not remembered, so wrong passwords cannot push them
    out. One bcrypt runs at a time; a check that finds one running answers "no" at once
    instead of queueing: a flood of wrong passwords costs one core and no server thread, while
    credentials that passed before are still let in and the probes (no credentials needed)
    are never held up. Credentials never seen before wait for a free moment of the flood."""

    def __init__(self) -> None:
        self._bcrypt = threading.Lock()
        self._lock = threading.Lock()  # the cache only
        self._cache: OrderedDict[bytes, bool] = OrderedDict()

    def check(self, users: Mapping[str, bytes], header: str) -> bool:
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        if not sep:
            return False
        name = user.decode("utf-8", "replace")
        hashed = users.get(name)
        known = hashed is not None
        hashed = hashed if hashed is not None else FAKE_HASH
        key = hashlib.sha256(b"\0".join((user, hashed, password))).digest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        if not self._bcrypt.acquire(blocking=False):
            return False  # busy: refused now, not remembered; the client tries again
        try:
            answer = bcrypt.checkpw(password[:BCRYPT_MAX_BYTES], hashed) and known
        except ValueError:
            answer = False
        finally:
            self._bcrypt.release()
        if answer:  # only successes: a flood of wrong passwords must not evict them
            with self._lock:
                self._cache[key] = answer
                while len(self._cache) > AUTH_CACHE_SIZE:
                    self._cache.popitem(last=False)
        return answer


class WebConfigWatch:
    """The web config in force, re-read when the file or a certificate file it names changes."""

    def __init__(self, path: Path, clock: Any = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        first = self._stamp(WebConfig())  # each stamp before its file is read: a write
        self.config = load_web_config(path)  # meanwhile is seen as a change
        self._stamps = first + self._stamp()[1:]
        self.context = self._context(self.config)
        self._checked = clock()
        self.reload_ok = True
        self.reloads = 0  # successful reloads after the first load

    def _context(self, config: WebConfig) -> ssl.SSLContext | None:
        return tls_context(config.tls, f"--web.config.file {self.path}") if config.tls else None

    def _stamp(self, config: WebConfig | None = None) -> tuple[tuple[str, int, int, int], ...]:
        """(name, inode, mtime in ns, size) of the file and the certificate files it names: a
        Secret volume's symlink swap changes the inode, ``cp -p`` the inode or the size."""
        config = config or self.config
        files = (str(self.path), *(config.tls.files() if config.tls else ()))
        out = []
        for name in files:
            try:
                st = os.stat(name)
                out.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((name, -1, -1, -1))
        return tuple(out)

    def current(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        """The configuration and TLS context for a new connection or request."""
        now = self._clock()
        if now - self._checked >= CHECK_EVERY_SECONDS:
            with self._lock:
                if now - self._checked >= CHECK_EVERY_SECONDS:
                    self._checked = now
                    stamps = self._stamp()
                    if stamps != self._stamps:
                        self._reload(stamps)
        return self.config, self.context

    def _reload(self, stamps: tuple[tuple[str, int, int, int], ...]) -> None:
        try:
            config = load_web_config(self.path)
            # The certificate files' stamps before they are read, for the same reason.
            stamps = stamps[:1] + self._stamp(config)[1:]
            if (config.tls is None) != (self.config.tls is None):
                raise WebConfigError(
                    f"--web.config.file {self.path}: turning TLS on or off needs a restart"
                )
            context = self._context(config)
        except WebConfigError as exc:
            if self.reload_ok:
                log.error("web config not reloaded, the last valid one stays in force: %s", exc)
            self.reload_ok = False
            self._stamps = stamps  # logged once per change, not once a second
            return
        self.config, self.context = config, context
        self._stamps = stamps
        self.reload_ok = True
        self.reloads += 1
        log.info("web config %s reloaded", self.path)
