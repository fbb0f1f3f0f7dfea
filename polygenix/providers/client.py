"""A provider reached over HTTP: its settings, a wire format, a transport and the retry policy.

Every failure is one `ProviderError` whose status is what PolyGenix answers its own client with:
503 unreachable, 504 no answer in time, 429 rate limited, 422 model not found, 502 anything else
(rejected key, other 4xx, 5xx after retries, a body with no usable reply).
"""

import logging
import re
import time
from dataclasses import replace

import requests

from .base import (
    ChatMessage,
    Completion,
    MalformedResponse,
    ProviderError,
    ProviderSettings,
    StreamEvent,
)
from .retry import retry_after, with_retries
from .transport import Transport, hang_up
from .wire import WireFormat

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 409, 429, 529}
# Shapes of API keys and other long secrets that must not reach a client through error text.
_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6,}|gsk_[A-Za-z0-9]{6,}|AIza[0-9A-Za-z_\-]{10,}|[A-Za-z0-9_\-]{32,})"
)
# What a body that is not the reply may raise while a wire format reads it.
_UNUSABLE = (MalformedResponse, KeyError, IndexError, TypeError, AttributeError, ValueError)


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

    def complete(
        self, messages: list[ChatMessage], model: str, *, request_id: str | None = None
    ) -> Completion:
        payload = self.wire.build_payload(messages, model, self.settings.max_output_tokens)
        response = self._send(self.wire.path(model), payload, model, request_id)
        try:
            data = response.json()
        except ValueError:
            data = None
        try:
            if not isinstance(data, dict):
                raise MalformedResponse("not a JSON object")
            return self.wire.parse_response(data, model)
        except _UNUSABLE as e:
            log.warning("%s returned an unusable response: %s", self.name, type(e).__name__)
            raise ProviderError(f"{self.name} returned a response with no usable reply") from None

    def stream(
        self, messages: list[ChatMessage], model: str, *, request_id: str | None = None
    ) -> "ProviderStream":
        """Open a streamed reply: retried like `complete` until the provider starts answering."""
        payload = self.wire.build_stream_payload(messages, model, self.settings.max_output_tokens)
        response = self._send(self.wire.stream_path(model), payload, model, request_id, True)
        return ProviderStream(self, response)

    def _send(self, path, payload, model, request_id, stream=False) -> requests.Response:
        url = self.settings.base_url + path
        headers = {**self.settings.headers, **self.wire.headers(self.settings.api_key)}
        if request_id:
            headers["X-Request-ID"] = request_id  # lets a provider's logs be matched with ours

        def attempt(deadline: float) -> requests.Response:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderError(f"{self.name} did not answer in time", status=504)
            response = self.transport.post(
                url,
                headers,
                payload,
                connect_timeout=min(self.settings.connect_timeout, remaining),
                # For a stream the read timeout also bounds each silence between chunks.
                read_timeout=remaining,
            )
            if response.status_code < 300:
                if not stream:
                    self._read_body(response)
                return response
            try:
                if response.status_code < 400:
                    raise ProviderError(
                        f"{self.name} answered with a redirect, which is not followed"
                    )
                raise self._http_error(response, model)
            finally:
                response.close()

        return with_retries(self.settings, attempt)

    def _read_body(self, response: requests.Response) -> None:
        """The whole body, within the attempt: a body cut short (the connection reset, a
        chunked body that stops) is a failed call, retried like any transient failure."""
        try:
            response.content  # noqa: B018 (read and kept by requests)
        except requests.Timeout:
            response.close()
            raise ProviderError(f"{self.name} did not answer in time", status=504) from None
        except requests.RequestException:
            response.close()
            raise self.transport.cut_short() from None

    def _http_error(self, response: requests.Response, model: str) -> ProviderError:
        """Map a provider's error answer to the status PolyGenix gives its own client."""
        name, status = self.name, response.status_code
        try:
            body = response.json()
        except (ValueError, requests.RequestException):
            body = None
        detail = self.redact(self.wire.error_message(body) or response.reason or "")
        said = f": {detail}" if detail else ""
        reasons = self.wire.error_reasons(body)
        if status in (401, 403) or "API_KEY_INVALID" in reasons:
            return ProviderError(f"{name} rejected the configured credentials")
        if status == 404 or "model_not_found" in reasons:
            return ProviderError(f"Model {model!r} was not found at {name}{said}", status=422)
        wait = retry_after(response.headers, self.wire.retry_delay(body))
        if status == 429:
            return ProviderError(
                f"{name} is rate limiting requests{said}",
                status=429,
                retry_after=wait,
                retryable=True,
            )
        if status in RETRY_STATUSES or status >= 500:
            return ProviderError(
                f"{name} failed (HTTP {status}){said}", retry_after=wait, retryable=True
            )
        return ProviderError(f"{name} rejected the request (HTTP {status}){said}")

    def redact(self, text: str) -> str:
        """Error text fit for a client: the key, and anything shaped like a key, removed."""
        if self.settings.api_key:
            text = text.replace(self.settings.api_key, "[redacted]")
        return _SECRET.sub("[redacted]", text)[:300]


class ProviderStream:
    """An open streamed reply: iterate for StreamEvents; close() ends it.

    The final `done` event comes only once the body has been read to its end, so a completed
    stream's connection goes back to the pool (no new TCP and TLS handshake for the next one).
    close() before that, from any thread, shuts the socket: a read waiting in another thread ends
    and the provider stops generating for us.
    """

    def __init__(self, provider: HTTPProvider, response: requests.Response):
        self.provider = provider
        self.response = response
        self.completed = False

    def __iter__(self):
        name, wire = self.provider.name, self.provider.wire
        finished = terminated = False
        for event in self._events():
            if event.error is not None:
                detail = self.provider.redact(event.error)
                raise ProviderError(f"{name} failed mid-stream: {detail}")
            finished = finished or event.finish_reason is not None
            terminated = terminated or event.done
            # The wire's terminator ([DONE], message_stop, "done": true) is followed at once by
            # the end of the body: read on to it before saying done.
            yield replace(event, done=False)
        if not (finished or terminated or wire.ENDS_AT_EOF):
            raise ProviderError(f"{name} ended the stream before the reply was complete")
        self.completed = True
        yield StreamEvent(done=True)

    def _events(self):
        wire, name = self.provider.wire, self.provider.name
        decoder = wire.stream_decoder()
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                for record in decoder.feed(chunk):
                    yield from wire.parse_stream_record(record)
            for record in decoder.close():
                yield from wire.parse_stream_record(record)
        except requests.RequestException:
            raise ProviderError(f"{name} stopped answering mid-stream") from None
        except _UNUSABLE:
            raise ProviderError(f"{name} sent a malformed stream") from None

    def close(self) -> None:
        if self.completed:
            self.response.close()  # its connection returns to the pool
        else:
            hang_up(self.response)
