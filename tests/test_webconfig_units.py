"""exporter.webconfig and exporter.logsetup without a server: basic auth under load, SANs,
hash shapes, and logfmt's quoting."""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

import bcrypt
import pytest

from exporter.logsetup import JsonFormatter, LogfmtFormatter, _logfmt_value
from exporter.webconfig import BasicAuth, WebConfigError, parse_web_config, peer_allowed


def header(user: str, password: str | bytes) -> str:
    raw = password if isinstance(password, bytes) else password.encode()
    return "Basic " + base64.b64encode(user.encode() + b":" + raw).decode()


USERS = {"prometheus": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4))}


def test_a_remembered_answer_never_waits_for_a_running_bcrypt_and_a_new_one_is_refused():
    auth = BasicAuth()
    assert auth.check(USERS, header("prometheus", "right"))  # remembered from now on
    results: list[bool] = []
    with auth._bcrypt:  # a flood's bcrypt is running
        for creds in (("prometheus", "right"), ("prometheus", "wrong"), ("nobody", "x")):
            t = threading.Thread(
                target=lambda c=creds: results.append(auth.check(USERS, header(*c)))
            )
            t.start()
            t.join(5)
            assert not t.is_alive(), "a check queued behind a running bcrypt"
    assert results == [True, False, False]
    assert auth.check(USERS, header("prometheus", "wrong")) is False  # checked now, refused
    assert auth.check(USERS, header("prometheus", "right")) is True


def test_passwords_past_72_bytes_are_compared_on_their_first_72_as_go_does():
    long = b"x" * 100
    users = {"u": bcrypt.hashpw(long[:72], bcrypt.gensalt(rounds=4))}
    auth = BasicAuth()
    assert auth.check(users, header("u", long))
    assert not auth.check(users, header("u", b"y" * 100))


@pytest.mark.parametrize(
    "value",
    ["Bearer abc", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(), ""],
)
def test_malformed_authorization_headers_are_refused(value: str):
    assert BasicAuth().check(USERS, value) is False


def test_ip_sans_match_whatever_their_spelling_and_a_client_without_certificate_passes():
    cert = {"subjectAltName": (("IP Address", "2001:DB8:0:0:0:0:0:1"), ("DNS", "a.example"))}
    assert peer_allowed(cert, ("2001:db8::1",))
    assert peer_allowed(cert, ("a.example",))
    assert not peer_allowed(cert, ("2001:db8::2", "b.example"))
    assert peer_allowed(None, ("a.example",))  # VerifyClientCertIfGiven, no certificate


def test_hashes_are_checked_by_shape_and_tls_settings_alone_do_not_turn_tls_on(tmp_path: Path):
    good = bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)).decode()
    assert parse_web_config(f"basic_auth_users: {{u: '{good}'}}", tmp_path).users
    for bad in ("$2y$10$short", "$1$md5$notbcrypt", "$2y$99$" + "a" * 53):
        with pytest.raises(WebConfigError, match="not a bcrypt hash"):
            parse_web_config(f"basic_auth_users: {{u: '{bad}'}}", tmp_path)
    assert parse_web_config("tls_server_config: {min_version: TLS13}", tmp_path).tls is None


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
        ("esc\x1b[31m nul\x00", '"esc\\u001b[31m nul\\u0000"'),
        ("sep\u2028", '"sep\\u2028"'),
        ("null", '"null"'),
        ("", '""'),
        ("back\\slash", '"back\\\\slash"'),
        ("café", "café"),
    ],
)
def test_logfmt_quotes_as_go_logfmt(value: str, written: str):
    assert _logfmt_value(value) == written


def test_both_formats_keep_one_record_on_one_line_and_json_is_ascii():
    record = logging.LogRecord("exporter", logging.WARNING, __file__, 1, "a\nb \ud83d", None, None)
    logfmt, as_json = LogfmtFormatter().format(record), JsonFormatter().format(record)
    assert "\n" not in logfmt and "\n" not in as_json
    assert "level=WARN " in logfmt and as_json.isascii() and '"level": "WARN"' in as_json


def test_a_flood_of_wrong_passwords_cannot_push_remembered_credentials_out():
    auth = BasicAuth()
    assert auth.check(USERS, header("prometheus", "right"))
    for n in range(300):  # more than the cache holds
        assert not auth.check(USERS, header("prometheus", f"wrong-{n}"))
    with auth._bcrypt:  # still remembered: answered without a bcrypt
        assert auth.check(USERS, header("prometheus", "right"))
