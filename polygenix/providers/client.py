"""A provider reached over HTTP: its settings, a wire format, a transport and the retry policy.

Every failure is one `ProviderError` whose status is what PolyGenix answers its own client with:
503 unreachable or the provider's quota used up, 504 no answer in time, 429 rate limited, 422
model not found, 502 anything else (rejected key, other 4xx, 5xx after retries, a body cut off
or with no usable reply). The provider's own words are kept in the message (keys removed).
Input the provider cannot take (an image it does not read...) is refused before any call, with
`UnsupportedInput`.
"""

import json
import logging
import re
import time
from dataclasses import replace
from typing import Any

import requests
import urllib3

from . import jsonbody
from .base import (
    NO_OPTIONS,
    USAGE,
    ChatMessage,
    Completion,
    MalformedResponse,
    Options,
    ProviderError,
    ProviderSettings,
    StreamEvent,
    UnsupportedInput,
    finish_with_calls,
)
from .reasoning import reasons
from .retry import retry_after, with_retries
from .tools import NO_TOOLING, Tooling
from .transport import Transport, hang_up
from .wire import Call, StreamState, WireFormat

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 409, 429, 529}
# Shapes of API keys and other long secrets that must not reach a client through error text.
_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6,}|gsk_[A-Za-z0-9]{6,}|AIza[0-9A-Za-z_\-]{10,}|[A-Za-z0-9_\-]{32,})"
)
# What a body that is not the reply may raise while a wire format reads it (RecursionError:
# JSON nested deeper than the parser goes).
_UNUSABLE = (
    MalformedResponse,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    ValueError,
    RecursionError,
)
READ_SIZE = 65536


class HTTPProvider:
    def __init__(self, settings: ProviderSettings, wire: WireFormat, *, key_required=True):
        self.settings = settings
        self.wire = wire
        self.key_required = key_required
        self.transport = Transport(settings.name, settings.base_url)

    @property
    def name(self) -> str:
        return self.settings.name

    def missing_setting(self, model: str | None = None) -> str | None:
        """ "api_key", "base_url" or "default_model" when that must be set first, else None."""
        if self.key_required and not self.settings.api_key:
            return "api_key"
        if not self.settings.base_url:
            return "base_url"
        if not (model or self.settings.default_model):
            return "default_model"
        return None

    def reasons(self, model: str, options: Options = NO_OPTIONS) -> bool:
        asked = self.wire.THINKS_WHEN_ASKED and options.reasoning_effort is not None
        return asked or reasons(self.settings, model)

    def output_cap(self, model: str, options: Options = NO_OPTIONS) -> int:
        if self.reasons(model, options):
            return self.settings.reasoning_max_output_tokens
        return self.settings.max_output_tokens

    def _call(self, model: str, options: Options, tooling: Tooling = NO_TOOLING) -> Call:
        reasoning = self.reasons(model, options)
        accepted = self.wire.accepted(model, options, reasoning)
        cap = self.output_cap(model, options)
        return Call(min(accepted.max_tokens or cap, cap), accepted, reasoning, tooling)

    def _payload(self, messages: list[ChatMessage], model: str, call: Call, stream: bool) -> dict:
        """The request body; what the provider cannot take is refused, naming the provider."""
        try:
            if stream:
                return self.wire.build_stream_payload(messages, model, call)
            return self.wire.build_payload(messages, model, call)
        except UnsupportedInput as e:
            raise UnsupportedInput(f"{self.name}: {e.message}", e.field, e.image_type) from None

    def check(self, messages: list[ChatMessage], model: str, tooling: Tooling = NO_TOOLING) -> None:
        self._payload(messages, model, self._call(model, NO_OPTIONS, tooling), stream=False)

    def complete(
        self,
        messages: list[ChatMessage],
        model: str,
        options: Options = NO_OPTIONS,
        *,
        request_id: str | None = None,
        tooling: Tooling = NO_TOOLING,
    ) -> Completion:
        call = self._call(model, options, tooling)
        payload = self._payload(messages, model, call, stream=False)
        body = self._send(self.wire.path(model), payload, model, request_id)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        try:
            if not isinstance(data, dict):
                raise MalformedResponse("not a JSON object")
            failed = self.wire.body_error(data)
            if failed is not None:
                raise self._failure(failed[1] or 502, failed[0], model, None)
            completion = self.wire.parse_response(data, model)
        except _UNUSABLE as e:
            log.warning("%s returned an unusable response: %s", self.name, type(e).__name__)
            detail = f": {e}" if isinstance(e, MalformedResponse) else ""
            raise self.unusable(detail) from None
        if not completion.content and not completion.tool_calls:
            used = {n: getattr(completion, n) for n in (*USAGE, "model")}
            raise no_reply(self.name, completion.finish_reason, completion.reasoning, used)
        reason = finish_with_calls(completion.finish_reason, bool(completion.tool_calls))
        return replace(completion, finish_reason=reason, options=call.options.given())

    def stream(
        self,
        messages: list[ChatMessage],
        model: str,
        options: Options = NO_OPTIONS,
        *,
        request_id: str | None = None,
        tooling: Tooling = NO_TOOLING,
    ) -> "ProviderStream":
        """Open a streamed reply: retried like `complete` until the provider starts answering
        (its headers, within STREAM_IDLE_TIMEOUT)."""
        call = self._call(model, options, tooling)
        payload = self._payload(messages, model, call, stream=True)
        path = self.wire.stream_path(model)
        response = self._send(path, payload, model, request_id, stream=True)
        return ProviderStream(self, response, call.options.given())

    def list_models(self, timeout: float) -> list[str]:
        """The models the provider itself offers (one short request, no retry)."""
        headers = {**self.settings.headers, **self.wire.headers(self.settings.api_key)}
        response = self.transport.get(
            (self.settings.base_url or "") + self.wire.models_path(), headers, timeout=timeout
        )
        try:
            if response.status_code >= 300:
                raise self._http_error(response, "")
            body = self._read(response, time.monotonic() + timeout)
            try:
                return self.wire.parse_models(json.loads(body))
            except _UNUSABLE:
                raise self.unusable(" (its model list)") from None
        finally:
            response.close()

    def unusable(self, detail: str = "") -> ProviderError:
        return ProviderError(f"{self.name} returned a response with no usable reply{detail}")

    def _send(self, path, payload, model, request_id, stream=False):
        """POST `payload`; a stream's response (headers read), else the whole body (bytes),
        both within the call's deadline and its retries."""
        url = (self.settings.base_url or "") + path
        body = jsonbody.encode(payload)
        headers = {**self.settings.headers, **self.wire.headers(self.settings.api_key)}
        if request_id:
            headers["X-Request-ID"] = request_id  # lets a provider's logs be matched with ours

        def attempt(deadline: float):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.late()
            response = self.transport.post(
                url,
                headers,
                body,
                connect_timeout=min(self.settings.connect_timeout, remaining),
                # A stream's read timeout bounds its first byte and each silence after it.
                read_timeout=(
                    min(self.settings.stream_idle_timeout, remaining) if stream else remaining
                ),
            )
            if response.status_code < 300:
                return response if stream else self._read(response, deadline)
            try:
                if response.status_code < 400:
                    raise ProviderError(
                        f"{self.name} answered with a redirect, which is not followed"
                    )
                raise self._http_error(response, model)
            finally:
                response.close()

        return with_retries(self.settings, attempt)

    def late(self) -> ProviderError:
        return ProviderError(f"{self.name} did not answer in time", status=504)

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        """The whole body by the deadline: a provider that trickles bytes (keep-alive newlines
        while it thinks) is cut at the deadline, not given a new read timeout with each byte.
        A body cut short is a failed call, retried like any transient failure."""
        parts = []
        try:
            while chunk := response.raw.read1(READ_SIZE, decode_content=True):
                parts.append(chunk)
                if time.monotonic() > deadline:
                    raise self.late()
        except urllib3.exceptions.TimeoutError:  # no byte at all until the deadline
            raise self.late() from None
        except (urllib3.exceptions.HTTPError, OSError):  # reset, cut off, malformed chunks
            raise self.transport.cut_short() from None
        finally:
            response.close()
        return b"".join(parts)

    def _http_error(self, response: requests.Response, model: str) -> ProviderError:
        """Map a provider's error answer to the status PolyGenix gives its own client."""
        try:
            body = response.json()
        except (ValueError, requests.RequestException):
            body = None
        message = self.wire.error_message(body) or response.reason or ""
        error = self._failure(response.status_code, message, model, body, response.headers)
        # `x-should-retry` is the provider's own word on retrying, as the official SDKs obey it.
        should = response.headers.get("x-should-retry")
        if should in ("true", "false") and error.status != 503:
            error.retryable = should == "true"
        return error

    def _failure(self, status: int, message: str, model: str, body: Any, headers=None):
        name = self.name
        detail = self.redact(message)
        said = f": {detail}" if detail else ""
        reasons = self.wire.error_reasons(body)
        if self.wire.quota_exhausted(status, body):
            return ProviderError(f"{name} provider quota exhausted{said}", status=503)
        if status == 403 and self.wire.FORBIDDEN:
            return ProviderError(f"{name} {self.wire.FORBIDDEN}{said}")
        if status in (401, 403) or "API_KEY_INVALID" in reasons:
            return ProviderError(f"{name} rejected the configured credentials{said}")
        if status == 404 or "model_not_found" in reasons:
            return ProviderError(f"Model {model!r} was not found at {name}{said}", status=422)
        wait = retry_after(headers or {}, self.wire.retry_delay(body))
        # A wait longer than we would make is not waited out: the client is told at once.
        patient = wait is None or wait <= self.settings.max_retry_wait
        if status == 429:
            return ProviderError(
                f"{name} is rate limiting requests{said}",
                status=429,
                retry_after=wait,
                retryable=patient,
            )
        if status in RETRY_STATUSES or status >= 500:
            return ProviderError(
                f"{name} failed (HTTP {status}){said}", retry_after=wait, retryable=patient
            )
        return ProviderError(f"{name} rejected the request (HTTP {status}){said}")

    def redact(self, text: str) -> str:
        """Error text fit for a client: the key, and anything shaped like a key, removed."""
        if self.settings.api_key:
            text = text.replace(self.settings.api_key, "[redacted]")
        return _SECRET.sub("[redacted]", text)[:300]


def no_reply(
    name: str, finish_reason: str | None, reasoning: str | None, usage: dict | None = None
) -> ProviderError:
    """The failure of a reply that holds no text (a refusal with nothing said, a reasoning
    model that spent its whole budget thinking): it must never be stored as a reply. `usage`
    is what it used all the same."""
    why = f" (finish reason: {finish_reason})" if finish_reason else ""
    what = "it spent its output on reasoning and gave no answer" if reasoning else "no text"
    message = f"{name} returned a response with no usable reply: {what}{why}"
    return ProviderError(message, usage=usage)


def merge(event: StreamEvent, into: dict) -> None:
    """A stream's usage, model, finish reason and tool calls so far, updated from `event`:
    later values replace earlier ones, except that a refusal (content_filter) stays one.

    `into["tool_calls"]`, once a call began, is the list of calls (ToolCall dicts: id, name,
    the arguments' fragments joined, provider_data) by their index; while it holds one, a
    finish reason is "tool_calls" (see finish_with_calls). A stream that ends early leaves the
    last call's arguments cut: only a finish reason says the reply is whole."""
    for name in (*USAGE, "model", "finish_reason"):
        value = getattr(event, name)
        if value is not None and not (
            name == "finish_reason" and into.get(name) == "content_filter"
        ):
            into[name] = value
    if event.tool_calls:
        calls = into.setdefault("tool_calls", [])
        for delta in event.tool_calls:
            while len(calls) <= delta.index:
                calls.append({"id": "", "name": "", "arguments": ""})
            call = calls[delta.index]
            if delta.id:
                call["id"] = delta.id
            if delta.name:
                call["name"] = delta.name
            call["arguments"] += delta.arguments
            if delta.provider_data:
                call["provider_data"] = dict(delta.provider_data)
    if into.get("tool_calls") and into.get("finish_reason") is not None:
        into["finish_reason"] = finish_with_calls(into["finish_reason"], True)


class ProviderStream:
    """An open streamed reply: iterate for StreamEvents; close() ends it.

    The final `done` event comes only once the body has been read to its end, so a completed
    stream's connection goes back to the pool (no new TCP and TLS handshake for the next one).
    A stream whose body ends without its format's end marker was cut short; one that runs past
    STREAM_MAX_SECONDS is ended. close() before the end, from any thread, shuts the socket: a
    read waiting in another thread ends and the provider stops generating for us.
    """

    def __init__(self, provider: HTTPProvider, response: requests.Response, options: dict):
        self.provider = provider
        self.response = response
        self.options = options  # what was sent, for the stored reply
        self.completed = False
        self.started = time.monotonic()

    def __iter__(self):
        name = self.provider.name
        ended = False
        limit = self.started + self.provider.settings.stream_max_seconds
        for event in self._events():
            if event.error is not None:
                detail = self.provider.redact(event.error)
                raise ProviderError(f"{name} failed mid-stream: {detail}")
            ended = ended or event.done
            # The end marker is followed at once by the end of the body: read on to it before
            # saying done.
            yield replace(event, done=False)
            if time.monotonic() > limit:
                raise ProviderError(f"{name} streamed for longer than allowed", status=504)
        if not ended:
            raise ProviderError(f"{name} ended the stream before the reply was complete")
        self.completed = True
        yield StreamEvent(done=True)

    def _events(self):
        wire, name = self.provider.wire, self.provider.name
        decoder = wire.stream_decoder()
        state = StreamState()
        try:
            # read1 hands over what has arrived, whatever the framing: a chunked body, or one
            # that ends when the provider closes the connection (no length, no chunks), which
            # iter_content would read to its very end before handing over anything.
            while chunk := self.response.raw.read1(READ_SIZE, decode_content=True):
                for record in decoder.feed(chunk):
                    yield from wire.parse_stream_record(record, state)
            for record in decoder.close():
                yield from wire.parse_stream_record(record, state)
        except urllib3.exceptions.ReadTimeoutError:
            raise ProviderError(f"{name} went silent mid-stream", status=504) from None
        except (urllib3.exceptions.HTTPError, OSError):  # reset, cut off, malformed chunks
            raise ProviderError(f"{name} stopped answering mid-stream") from None
        except _UNUSABLE:
            raise ProviderError(f"{name} sent a malformed stream") from None

    def close(self) -> None:
        if self.completed:
            self.response.close()  # its connection returns to the pool
        else:
            hang_up(self.response)
