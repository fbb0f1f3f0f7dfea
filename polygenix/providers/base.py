"""What every provider client shares: settings, the message shape, results, the error types.

This package is a library: it knows nothing of Flask, the app's configuration or its database.
The app builds each provider's `ProviderSettings` once, at start, and passes per call what the
call needs (messages, model, options, tooling, request id).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from .messages import ChatMessage, ToolCall, UnsupportedInput
from .tools import NO_TOOLING, Tooling

__all__ = ["ChatMessage", "ToolCall", "UnsupportedInput"]


@dataclass(frozen=True)
class ProviderSettings:
    """One provider's settings, read from the app's configuration at start."""

    name: str
    api_key: str | None = None
    base_url: str | None = None
    default_model: str | None = None
    models: tuple[str, ...] = ()  # listed beside the default model
    connect_timeout: float = 5.0
    timeout: float = 600.0  # for a whole call, retries included
    stream_idle_timeout: float = 300.0  # the longest silence in a stream, its first byte's too
    stream_max_seconds: float = 1800.0  # the longest a stream may last
    max_retries: int = 2
    max_retry_wait: float = 10.0
    max_output_tokens: int = 4096
    reasoning_max_output_tokens: int = 32768  # for models that reason
    reasoning_models: tuple[str, ...] = ()  # globs on `provider/model`, beside the known ones
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request

    def listed_models(self) -> list[str]:
        """The default model, then the extra ones, each once."""
        first = [self.default_model] if self.default_model else []
        return list(dict.fromkeys(first + list(self.models)))


EFFORTS = ("low", "medium", "high")


@dataclass(frozen=True)
class Options:
    """Generation options a caller may ask for; None leaves the provider's default."""

    temperature: float | None = None  # 0 to 2
    top_p: float | None = None  # 0 to 1
    max_tokens: int | None = None  # at most the model's output cap
    stop: tuple[str, ...] | None = None  # up to 4
    reasoning_effort: str | None = None  # one of EFFORTS
    seed: int | None = None  # for providers that sample reproducibly from a seed

    def given(self) -> dict:
        """The options set, as a JSON object."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in vars(self).items()
            if value is not None
        }


NO_OPTIONS = Options()


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    finish_reason: str | None = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # as billed: reasoning tokens included
    reasoning: str | None = None  # the model's thinking, kept apart from the answer
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None  # prompt tokens read from the provider's cache
    options: dict = field(default_factory=dict)  # the options sent, as Options.given()
    # The calls the model made (ids unique, arguments as produced); a reply may hold only these.
    tool_calls: tuple[ToolCall, ...] = ()


# Usage fields of a Completion and a StreamEvent.
USAGE = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens")


def finish_with_calls(reason: str | None, has_calls: bool) -> str | None:
    """The finish reason of a reply: "tool_calls" whenever it holds a call, whatever the
    provider's own reason ("stop", "end_turn", "STOP"...), except "length": a reply cut at its
    output cap may have cut its last call's arguments, and must not pass for whole."""
    if has_calls and reason != "length":
        return "tool_calls"
    return reason


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call, in OpenAI's shape: a call's first delta has its index
    (0, 1... in the order calls begin), id and name, and perhaps a first fragment of its
    arguments; later deltas its index and the next fragment. Joined, the fragments are the
    arguments as the model produced them. `provider_data` comes with the first delta."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    provider_data: dict[str, str] | None = None


@dataclass(frozen=True)
class StreamEvent:
    """One thing a provider said: some text or reasoning, pieces of tool calls, the usage so
    far, why it stopped, that its stream is over, or an error.

    Usage fields are totals as reported so far (providers report them cumulatively or once);
    a later event's values replace earlier ones.
    """

    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    model: str | None = None
    error: str | None = None
    done: bool = False  # the format's end marker ([DONE], message_stop, a finishReason...)


class ProviderError(Exception):
    """A provider call failed; `status` is what the API answers (422, 429, 502, 503, 504...).

    `retryable` marks failures worth another attempt (connection errors, 408, 409, 429, 5xx).
    `retry_after` is what the provider asked us to wait, in seconds. `usage`: what an answer
    that held no usable reply used (USAGE counts and the model, as reported), for it is billed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retry_after: float | None = None,
        retryable: bool = False,
        usage: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable
        self.usage = usage


class MalformedResponse(ValueError):
    """A provider answered 2xx with a body that holds no usable reply."""


class ReplyStream(Protocol):
    """An open streamed reply: iterating yields StreamEvents; close() stops it (any thread)."""

    def __iter__(self) -> Iterator[StreamEvent]: ...

    def close(self) -> None: ...


class Provider(Protocol):
    """A provider client: its settings, whether it can be used, and its two calls."""

    settings: ProviderSettings

    @property
    def name(self) -> str: ...

    def missing_setting(self, model: str | None = None) -> str | None:
        """The variable to set before this provider can be used (for `model`, if one is
        named), or None when it is ready."""

    def output_cap(self, model: str, options: Options = NO_OPTIONS) -> int:
        """The most tokens this model may be asked to write (more when it reasons)."""

    def check(self, messages: list[ChatMessage], model: str, tooling: Tooling = NO_TOOLING) -> None:
        """Raise UnsupportedInput if this provider cannot take these messages or this tooling
        (what complete and stream would refuse before calling), else nothing."""

    def complete(
        self,
        messages: list[ChatMessage],
        model: str,
        options: Options = NO_OPTIONS,
        *,
        request_id: str | None = None,
        tooling: Tooling = NO_TOOLING,
    ) -> Completion: ...

    def stream(
        self,
        messages: list[ChatMessage],
        model: str,
        options: Options = NO_OPTIONS,
        *,
        request_id: str | None = None,
        tooling: Tooling = NO_TOOLING,
    ) -> ReplyStream: ...
