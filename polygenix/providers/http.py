"""The one place that talks HTTP to providers: timeouts, retries, and mapping failures.

Wire-format modules (openai_chat, anthropic, gemini, ollama) are pure: they build a payload and
parse a response. `HTTPProvider` joins one of them to a base URL, a key and a `requests.Session`.
Retries use tenacity: at most PROVIDER_MAX_RETRIES more attempts on connection errors, 408, 409,
429, 5xx and 529, waiting as the provider asks (Retry-After, retry-after-ms, Gemini's RetryInfo)
or with jittered exponential backoff, never longer than PROVIDER_MAX_RETRY_WAIT and never past the
PROVIDER_TIMEOUT deadline.
"""

import contextlib
import functools
import http.cookiejar
import logging
import math
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import replace
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from config import provider_prefix

from ..logs import request_id
from .base import ChatMessage, Completion, MalformedResponse, ProviderError
from .streaming import StreamEvent

log = logging.getLogger(__name__)

USER_AGENT = "PolyGenix/0.1"
# What a requests.Session would add (Accept, Accept-Encoding...), with our own User-Agent.
BASE_HEADERS = {**requests.utils.default_headers(), "User-Agent": USER_AGENT}
RETRY_STATUSES = {408, 409, 429, 529}
# Shapes of API keys and other long secrets that must not reach a client through error text.
_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6,}|gsk_[A-Za-z0-9]{6,}|AIza[0-9A-Za-z_\-]{10,}|[A-Za-z0-9_\-]{32,})"
)


class HTTPProvider:
    """A provider reached over HTTP, configured by `<PREFIX>_API_KEY`, `_BASE_URL`, ... ."""

    def __init__(
        self,
        name: str,
        wire: ModuleType,
        *,
        base_url: str | None,
        default_model: str | None,
        key_required: bool = True,
        extra_headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ):
        self.NAME = name
        self.wire = wire
        self.prefix = provider_prefix(name)
        self._base_url = base_url
        self._default_model = default_model
        self.key_required = key_required
        self.extra_headers = dict(extra_headers or {})
        # This provider's variations on its wire format, passed to the payload builders.
        self.options = dict(options or {})
        # For its connection pool: each request is prepared apart and sent through it (see
        # _attempt), so no session-level state reaches a provider.
        self.session = requests.Session()
        # One session serves every user: a cookie one user's call brought back (a CDN's, say)
        # is not kept for the next.
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        # requests would read the environment (proxies, CA bundle, ~/.netrc) on every call; a
        # server's environment does not change, so it is read once (see _environment_proxies).
        self.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )

    def _setting(self, config: Mapping[str, Any], suffix: str):
        return config.get(f"{self.prefix}_{suffix}")

    def base_url(self, config: Mapping[str, Any]) -> str | None:
        url = self._setting(config, "BASE_URL") or self._base_url
        return url.rstrip("/") if url else None

    def default_model(self, config: Mapping[str, Any]) -> str | None:
        return self._setting(config, "DEFAULT_MODEL") or self._default_model

    def models(self, config: Mapping[str, Any]) -> list[str]:
        default = self.default_model(config)
        extra = self._setting(config, "MODELS") or []
        return list(dict.fromkeys(([default] if default else []) + extra))

    def missing_setting(self, config: Mapping[str, Any], model: str | None = None) -> str | None:
        """The variable to set before this provider can be used (for `model`, if one is named),
        or None when it is ready."""
        if self.key_required and not self._setting(config, "API_KEY"):
            return f"{self.prefix}_API_KEY"
        if not self.base_url(config):
            return f"{self.prefix}_BASE_URL"
        if not (model or self.default_model(config)):
            return f"{self.prefix}_DEFAULT_MODEL"
        return None

    def _headers(self, config: Mapping[str, Any]) -> dict[str, str]:
        key = self._setting(config, "API_KEY")
        headers = {**BASE_HEADERS, **self.extra_headers, **self.wire.headers(key)}
        if rid := request_id():
            headers["X-Request-ID"] = rid  # lets a provider's logs be matched with ours
        return headers

    def complete(
        self, messages: list[ChatMessage], model: str, config: Mapping[str, Any]
    ) -> Completion:
        url = self.base_url(config) + self.wire.path(model)
        payload = self.wire.build_payload(messages, model, config, **self.options)
        response = send(self, url, self._headers(config), payload, model, config)
        try:
            data = response.json()
        except ValueError:
            data = None
        try:
            if not isinstance(data, dict):
                raise MalformedResponse("not a JSON object")
            return self.wire.parse_response(data, model)
        except (MalformedResponse, KeyError, IndexError, TypeError, AttributeError) as e:
            log.warning("%s returned an unusable response: %s", self.NAME, type(e).__name__)
            raise ProviderError(f"{self.NAME} returned a response with no usable reply") from None

    def stream(
        self, messages: list[ChatMessage], model: str, config: Mapping[str, Any]
    ) -> "ProviderStream":
        """Open a streamed reply: retried like `complete` until the provider starts answering."""
        url = self.base_url(config) + self.wire.stream_path(model)
        payload = self.wire.build_stream_payload(messages, model, config, **self.options)
        response = send(self, url, self._headers(config), payload, model, config, stream=True)
        return ProviderStream(
            self.NAME, self.wire, response, lambda text: _redact(text, self, config)
        )


class ProviderStream:
    """An open streamed reply: iterate for StreamEvents; close() ends it.

    The final `done` event comes only once the body has been read to its end, so a completed
    stream's connection goes back to the pool (no new TCP and TLS handshake for the next one).
    close() before that, from any thread, shuts the socket: a read waiting in another thread ends
    and the provider stops generating for us.
    """

    def __init__(self, name: str, wire: ModuleType, response: requests.Response, redact):
        self.name = name
        self.wire = wire
        self.response = response
        self.redact = redact
        self.completed = False

    def __iter__(self):
        finished = terminated = False
        for event in self._events():
            if event.error is not None:
                detail = self.redact(event.error)
                raise ProviderError(f"{self.name} failed mid-stream: {detail}")
            finished = finished or event.finish_reason is not None
            terminated = terminated or event.done
            # The wire's terminator ([DONE], message_stop, "done": true) is followed at once by the
            # end of the body: read on to it before saying done.
            yield replace(event, done=False)
        if not (finished or terminated or self.wire.ENDS_AT_EOF):
            raise ProviderError(f"{self.name} ended the stream before the reply was complete")
        self.completed = True
        yield StreamEvent(done=True)

    def _events(self):
        decoder = self.wire.stream_decoder()
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                for record in decoder.feed(chunk):
                    yield from self.wire.parse_stream_record(record)
            for record in decoder.close():
                yield from self.wire.parse_stream_record(record)
        except requests.RequestException:
            raise ProviderError(f"{self.name} stopped answering mid-stream") from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            raise ProviderError(f"{self.name} sent a malformed stream") from None

    def close(self) -> None:
        if not self.completed:
            # shutdown() wakes a read blocked in the reading thread; close() alone would leave
            # the provider's connection open until its next chunk.
            sock = getattr(getattr(self.response.raw, "_connection", None), "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.response.close()  # a completed stream's connection returns to the pool


def send(
    provider: HTTPProvider,
    url: str,
    headers: dict[str, str],
    payload: dict,
    model: str,
    config: Mapping[str, Any],
    *,
    stream: bool = False,
) -> requests.Response:
    """POST `payload` and return the provider's successful response, retrying what is worth it.

    With `stream`, the body is left unread for the caller.
    """
    timeout = config["PROVIDER_TIMEOUT"]
    deadline = time.monotonic() + timeout
    max_wait = config["PROVIDER_MAX_RETRY_WAIT"]
    backoff = wait_random_exponential(multiplier=0.5, max=max_wait)

    def wait(state) -> float:
        asked = state.outcome.exception().retry_after
        return min(asked, max_wait) if asked is not None else backoff(state)

    def before_sleep(state) -> None:
        error = state.outcome.exception()
        log.warning(
            "%s attempt %d failed (%s); retrying in %.2f s",
            provider.NAME,
            state.attempt_number,
            error.message,
            state.upcoming_sleep,
        )

    retrying = Retrying(
        stop=stop_after_attempt(config["PROVIDER_MAX_RETRIES"] + 1) | stop_before_delay(timeout),
        wait=wait,
        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(_attempt, provider, url, headers, payload, model, config, deadline, stream)


def _attempt(provider, url, headers, payload, model, config, deadline, stream) -> requests.Response:
    name = provider.NAME
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ProviderError(f"{name} did not answer in time", status=504)
    connect = min(config["PROVIDER_CONNECT_TIMEOUT"], remaining)
    # Prepared here rather than by the session: merging in a session's settings (which we do
    # not use) cost as much again as preparing the request.
    prepared = requests.Request("POST", url, headers=headers, json=payload).prepare()
    try:
        # For a stream the read timeout also bounds each silence between chunks.
        response = provider.session.send(
            prepared,
            proxies=_environment_proxies(*urlsplit(url)[:2]),
            verify=provider.verify,
            timeout=(connect, remaining),
            stream=stream,
            # A redirect could carry the key's request elsewhere: never followed.
            allow_redirects=False,
        )
    except requests.ConnectTimeout:
        raise ProviderError(f"{name} could not be reached", status=503, retryable=True) from None
    except requests.Timeout:
        raise ProviderError(f"{name} did not answer in time", status=504) from None
    except requests.ConnectionError:
        raise ProviderError(f"{name} could not be reached", status=503, retryable=True) from None
    if response.status_code >= 300:
        try:
            if response.status_code < 400:
                raise ProviderError(f"{name} answered with a redirect, which is not followed")
            raise _http_error(provider, response, model, config)
        finally:
            response.close()
    return response


@functools.cache
def _environment_proxies(scheme: str, host: str) -> dict[str, str]:
    """The proxy HTTP(S)_PROXY / ALL_PROXY name for this host, unless NO_PROXY exempts it."""
    return requests.utils.get_environ_proxies(f"{scheme}://{host}/")


def _http_error(provider: HTTPProvider, response, model: str, config) -> ProviderError:
    """Map a provider's error answer to the status PolyGenix gives its own client."""
    name, status = provider.NAME, response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = _redact(_error_message(body) or response.reason or "", provider, config)
    said = f": {detail}" if detail else ""
    reasons = _error_reasons(body)
    if status in (401, 403) or "API_KEY_INVALID" in reasons:
        return ProviderError(
            f"{name} rejected the configured credentials (check {provider.prefix}_API_KEY)"
        )
    if status == 404 or "model_not_found" in reasons:
        return ProviderError(f"Model {model!r} was not found at {name}{said}", status=422)
    retry_after = _retry_after(response, body)
    if status == 429:
        return ProviderError(
            f"{name} is rate limiting requests{said}",
            status=429,
            retry_after=retry_after,
            retryable=True,
        )
    retryable = status in RETRY_STATUSES or status >= 500
    if retryable:
        return ProviderError(
            f"{name} failed (HTTP {status}){said}", retry_after=retry_after, retryable=True
        )
    return ProviderError(f"{name} rejected the request (HTTP {status}){said}")


def _error_message(body: Any) -> str | None:
    """The provider's error text: {"error": {"message": ...}}, or Ollama's {"error": "..."}."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        return str(message) if message else None
    if isinstance(error, str):
        return error
    return str(body["message"]) if isinstance(body.get("message"), str) else None


def _error_reasons(body: Any) -> set[str]:
    """Machine-readable error codes: OpenAI `code`, Anthropic `type`, Gemini ErrorInfo `reason`."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return set()
    error = body["error"]
    reasons = {str(error.get(k)) for k in ("code", "type", "status") if error.get(k)}
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason"):
            reasons.add(str(detail["reason"]))
    return reasons


def _retry_after(response, body: Any) -> float | None:
    """Seconds the provider asks us to wait: retry-after-ms, Retry-After, or Gemini's RetryInfo."""
    headers = response.headers
    try:
        if headers.get("retry-after-ms"):
            return max(float(headers["retry-after-ms"]) / 1000, 0.0)
        if headers.get("retry-after"):
            value = headers["retry-after"]
            try:
                return max(float(value), 0.0)
            except ValueError:
                return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        pass
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        for detail in body["error"].get("details") or []:
            delay = detail.get("retryDelay") if isinstance(detail, dict) else None
            if isinstance(delay, str) and re.fullmatch(r"\d+(\.\d+)?s", delay):
                return float(delay[:-1])
    return None


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """The Retry-After header for our own client (whole seconds, rounded up)."""
    return {"Retry-After": str(math.ceil(seconds))} if seconds is not None else {}


def _redact(text: str, provider: HTTPProvider, config) -> str:
    key = config.get(f"{provider.prefix}_API_KEY")
    if key:
        text = text.replace(key, "[redacted]")
    return _SECRET.sub("[redacted]", text)[:300]
