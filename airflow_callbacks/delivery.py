"""Posting to Slack with slack-sdk: target resolution, bounded retries, no raise, no secrets."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler

from airflow_callbacks.deadline import Deadline, Expired, call_within
from airflow_callbacks.redact import Redactor, filter_of, mask_in_airflow

log = logging.getLogger("airflow_callbacks")

DEFAULT_BUDGET_SECONDS = 20.0
DEFAULT_TIMEOUT_SECONDS = 5


@dataclass(repr=False)
class SlackTarget:
    """Where a message goes; ``repr`` never shows the token or the webhook URL."""

    kind: str  # "webhook" or "api"
    source: str  # which setting chose it, for log lines
    conn_id: str = ""  # an Airflow connection: the Slack provider's hook builds the client
    webhook_url: str = ""
    token: str = ""
    channel: str = ""
    base_url: str = ""
    secrets: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"SlackTarget(kind={self.kind!r}, source={self.source!r}, channel={self.channel!r})"


def _api_base(env: Mapping[str, str]) -> str:
    base = env.get("SLACK_API_BASE_URL", "").strip()
    if base and not base.endswith("/"):
        base += "/"
    return base


def _extra_value(extra: Mapping[str, Any], conn_type: str, name: str) -> Any:
    """An extra as the Slack provider reads it: ``name`` or the older ``extra__{type}__{name}``."""
    value = extra.get(name)
    return value if value not in (None, "") else extra.get(f"extra__{conn_type}__{name}")


def webhook_url_of(host: str, schema: str, password: str) -> str:
    """The webhook URL exactly as the Slack provider's SlackWebhookHook builds it."""
    token = password.strip()
    if "://" in token:
        return token
    base = host
    if not base or "://" not in base:
        base = f"{schema or 'https'}://{host or 'hooks.slack.com/services'}"
    return (base.rstrip("/") + "/" + token.lstrip("/")).rstrip("/")


def _from_connection(
    conn_id: str, channel: str | None, env: Mapping[str, str]
) -> SlackTarget | None:
    conn = _get_connection(conn_id)
    if conn is None:
        return None
    conn_type = str(getattr(conn, "conn_type", "") or "").lower()
    password = str(getattr(conn, "password", "") or "")
    extra = _extra(conn)
    if conn_type in ("slackwebhook", "slack_incoming_webhook") or "webhook" in conn_type:
        host = str(getattr(conn, "host", "") or "").strip()
        url = webhook_url_of(host, str(getattr(conn, "schema", "") or ""), password)
        return SlackTarget(
            "webhook",
            f"connection {conn_id}",
            conn_id=conn_id,
            webhook_url=url,
            secrets=[url, password.strip()],
        )
    base = str(_extra_value(extra, "slack", "base_url") or "")
    return SlackTarget(
        "api",
        f"connection {conn_id}",
        conn_id=conn_id,
        token=password,
        channel=channel or str(extra.get("channel") or "") or env.get("SLACK_CHANNEL", ""),
        base_url=base,
        secrets=[password],
    )


def _extra(conn: Any) -> dict[str, Any]:
    try:
        value = conn.extra_dejson
    except Exception:
        return {}
    return value if isinstance(value, dict) else {}


def _get_connection(conn_id: str) -> Any:
    try:
        try:
            from airflow.sdk import BaseHook  # Airflow 3
        except ImportError:
            from airflow.hooks.base import BaseHook  # type: ignore  # Airflow 2
        return BaseHook.get_connection(conn_id)
    except Exception as exc:
        log.warning(
            "Slack alert: Airflow connection %r not usable: %s", conn_id, type(exc).__name__
        )
        return None


def resolve_target(
    conn_id: str | None = None,
    channel: str | None = None,
    env: Mapping[str, str] | None = None,
) -> SlackTarget | None:
    """In this order: an Airflow connection, SLACK_WEBHOOK_URL, SLACK_BOT_TOKEN + SLACK_CHANNEL."""
    env = os.environ if env is None else env
    conn_id = conn_id or env.get("AIRFLOW_CALLBACKS_SLACK_CONN_ID")
    if conn_id:
        target = _from_connection(conn_id, channel, env)
        if target is not None:
            return target
    url = env.get("SLACK_WEBHOOK_URL", "").strip()
    if url:
        return SlackTarget("webhook", "SLACK_WEBHOOK_URL", webhook_url=url, secrets=[url])
    token = env.get("SLACK_BOT_TOKEN", "").strip()
    if token:
        return SlackTarget(
            "api",
            "SLACK_BOT_TOKEN",
            token=token,
            channel=channel or env.get("SLACK_CHANNEL", ""),
            base_url=_api_base(env),
            secrets=[token],
        )
    return None


class _Budgeted:
    """A slack-sdk retry handler that knows the deadline of the whole delivery."""

    def __init__(self, deadline: Deadline, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)  # type: ignore[call-arg]
        self.deadline = deadline


class _BoundedRateLimit(_Budgeted, RateLimitErrorRetryHandler):
    """Honours Retry-After, but never sleeps past the total time budget."""

    def _can_retry(
        self, *, state: Any, request: Any, response: Any = None, error: Any = None
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        raw = headers.get("retry-after", ["1"])
        try:
            wait = float(raw[0] if isinstance(raw, list) else raw)
        except (TypeError, ValueError):
            wait = 1.0
        return wait + 1 < self.deadline.left()


class _BoundedServerError(_Budgeted, ServerErrorRetryHandler):
    def _can_retry(
        self, *, state: Any, request: Any, response: Any = None, error: Any = None
    ) -> bool:
        ok = response is not None and response.status_code in (500, 502, 503, 504)
        return ok and self.deadline.left() > 2


class _BoundedConnectionError(_Budgeted, ConnectionErrorRetryHandler):
    def _can_retry(
        self, *, state: Any, request: Any, response: Any = None, error: Any = None
    ) -> bool:
        return super()._can_retry(
            state=state, request=request, response=response, error=error
        ) and (self.deadline.left() > 2)


def _handlers(deadline: Deadline) -> list[RetryHandler]:
    return [
        _BoundedRateLimit(deadline, 3),
        _BoundedServerError(deadline, 2),
        _BoundedConnectionError(deadline, 2),
    ]


def _sdk_logger(target: SlackTarget) -> logging.Logger:
    """slack-sdk logs the webhook URL and bodies at DEBUG: give it a logger that redacts them."""
    logger = logging.getLogger("airflow_callbacks.slack_sdk")
    filter_of(logger).add(*target.secrets)
    filter_of(log).add(*target.secrets)
    mask_in_airflow(target.secrets)
    return logger


# chat.postMessage errors that mean "not this channel" (the alert can go elsewhere).
CHANNEL_REFUSALS = frozenset({"channel_not_found", "not_in_channel", "is_archived"})


def _plain(text: str) -> str:
    """Text for mrkdwn without its control characters (<, >, &)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:80]


@dataclass(frozen=True)
class Posted:
    ok: bool
    channel: str = ""
    ts: str = ""


def _provider_client(target: SlackTarget, kwargs: dict[str, Any]) -> Any:
    """The Slack provider's own client for ``target.conn_id``; None without the provider."""
    if not target.conn_id:
        return None
    try:
        if target.kind == "webhook":
            from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

            return SlackWebhookHook(slack_webhook_conn_id=target.conn_id, **kwargs).client
        from airflow.providers.slack.hooks.slack import SlackHook

        return SlackHook(slack_conn_id=target.conn_id, **kwargs).client
    except ImportError:
        return None


def _client(target: SlackTarget, kwargs: dict[str, Any]) -> Any:
    client = _provider_client(target, kwargs)
    if client is not None:
        return client
    if target.kind == "webhook":
        from slack_sdk.webhook import WebhookClient

        return WebhookClient(target.webhook_url, **kwargs)
    from slack_sdk import WebClient

    if target.base_url:
        kwargs["base_url"] = target.base_url
    return WebClient(token=target.token, **kwargs)


class Slack:
    """One delivery: a client (the Slack provider's hook for a connection, else slack-sdk) with
    one time budget for all its calls, the whole of each answer included (slack-sdk's timeout
    bounds each socket read only). Methods never raise and log without secrets; every text
    sent is redacted (``secrets``: more to redact than the target's own)."""

    def __init__(
        self,
        target: SlackTarget,
        budget: float = DEFAULT_BUDGET_SECONDS,
        timeout: int = DEFAULT_TIMEOUT_SECONDS,
        secrets: Iterable[str] = (),
    ) -> None:
        self.target = target
        self.threads = target.kind == "api"  # webhooks cannot reply in threads or edit
        self.last_error = ""  # Slack's error code of the last failed call
        self.deadline = Deadline(budget)
        self.redact = Redactor([*target.secrets, *secrets], os.environ)
        kwargs: dict[str, Any] = {
            "timeout": max(1, min(timeout, int(budget))),
            "logger": _sdk_logger(target),
            "retry_handlers": _handlers(self.deadline),
        }
        self.client: Any = self._call(lambda: _client(target, kwargs), "connecting")

    def _call(self, call: Callable[[], Any], what: str) -> Any:
        """``call()`` within what is left of the budget; None when it failed or ran out."""
        try:
            return call_within(self.deadline.left(), call, f"slack {what}")
        except Expired:
            log.warning(
                "Slack alert not delivered (%s): gave up %s after %.3gs (the delivery's budget): "
                "no complete answer in time",
                self.target.source,
                what,
                self.deadline.seconds,
            )
        except Exception as exc:
            self._failed(exc)
        return None

    def _failed(self, exc: Exception) -> None:
        reason = getattr(getattr(exc, "response", None), "data", None)
        detail = reason.get("error") if isinstance(reason, dict) else type(exc).__name__
        self.last_error = str(detail)
        text = self.redact(f"{detail}")
        log.warning("Slack alert not delivered (%s): %s", self.target.source, text)

    def post(
        self,
        message: Mapping[str, Any],
        thread_ts: str = "",
        metadata: Mapping[str, Any] | None = None,
        channel: str = "",
    ) -> Posted:
        """Post once (with bounded retries); a reply when ``thread_ts`` is given; to ``channel``
        instead of the target's (Web API only: a webhook posts where it was made for)."""
        if self.client is None:
            return Posted(False)
        message = self.redact.payload(message)
        if self.target.kind == "webhook":
            return self._call(lambda: self._post_webhook(message), "posting") or Posted(False)
        channel = channel or self.target.channel
        if not channel:
            log.warning(
                "Slack alert not delivered (%s): no channel (set SLACK_CHANNEL or the "
                "connection's channel)",
                self.target.source,
            )
            return Posted(False)
        kwargs: dict[str, Any] = {}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if metadata:
            kwargs["metadata"] = self.redact.payload(metadata)
        response = self._call(
            lambda: self.client.chat_postMessage(
                channel=channel,
                text=message.get("text", ""),
                blocks=message.get("blocks"),
                unfurl_links=False,
                unfurl_media=False,
                link_names=False,
                **kwargs,
            ),
            "posting",
        )
        if response is None:
            fallback = self.target.channel
            if (
                not thread_ts
                and fallback
                and channel != fallback
                and self.last_error in CHANNEL_REFUSALS
            ):
                # A route to a channel that does not take the bot (a typo, never invited,
                # archived) must not lose the alert: once more to the target's own channel.
                log.warning(
                    "Slack alert not delivered to routed channel %s (%s); posting to %s",
                    self.redact(channel),
                    self.last_error,
                    self.redact(fallback),
                )
                note = {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f"Routed to {_plain(channel)}, which refused it "
                            f"({_plain(self.last_error)}): posted here instead.",
                        }
                    ],
                }
                blocks = [*(message.get("blocks") or []), note][:50]
                return self.post({**message, "blocks": blocks}, metadata=metadata, channel=fallback)
            return Posted(False)
        return Posted(True, str(response.get("channel") or ""), str(response.get("ts") or ""))

    def _post_webhook(self, message: Mapping[str, Any]) -> Posted:
        response = self.client.send_dict(dict(message))
        if response.status_code == 200:
            return Posted(True)
        body = " ".join(str(response.body or "").split())
        log.warning(
            "Slack alert not delivered (%s): HTTP %s %s",
            self.target.source,
            response.status_code,
            # Redact before cutting: a cut secret no longer matches, and proxies echo the
            # webhook's secret path in their error pages.
            self.redact(body)[:200],
        )
        return Posted(False)

    def update(self, channel: str, ts: str, message: Mapping[str, Any]) -> bool:
        """Rewrite a message this app posted (chat.update)."""
        if self.client is None or not self.threads:
            return False
        message = self.redact.payload(message)
        return (
            self._call(
                lambda: self.client.chat_update(
                    channel=channel,
                    ts=ts,
                    text=message.get("text", ""),
                    blocks=message.get("blocks"),
                ),
                "updating",
            )
            is not None
        )
