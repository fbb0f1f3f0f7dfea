"""What every provider client shares: the message shape, the result, and the one error type."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

if TYPE_CHECKING:
    from .streaming import StreamEvent


class ChatMessage(TypedDict):
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    finish_reason: str | None = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ProviderError(Exception):
    """A provider call failed; `status` is what the API answers (422, 429, 502, 503, 504...).

    `retryable` marks failures worth another attempt (connection errors, 408, 409, 429, 5xx).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retry_after: float | None = None,
        retryable: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable


class MalformedResponse(ValueError):
    """A provider answered 2xx with a body that holds no usable reply."""


class Provider(Protocol):
    """A provider client: its name, its settings, and one blocking call."""

    NAME: str

    def default_model(self, config: Mapping[str, Any]) -> str | None: ...

    def models(self, config: Mapping[str, Any]) -> list[str]: ...

    def base_url(self, config: Mapping[str, Any]) -> str | None: ...

    def missing_setting(
        self, config: Mapping[str, Any], model: str | None = None
    ) -> str | None: ...

    def complete(
        self, messages: list[ChatMessage], model: str, config: Mapping[str, Any]
    ) -> Completion: ...

    def stream(
        self, messages: list[ChatMessage], model: str, config: Mapping[str, Any]
    ) -> "ReplyStream": ...


class ReplyStream(Protocol):
    """An open streamed reply: iterating yields StreamEvents; close() stops it (any thread)."""

    def __iter__(self) -> Iterator["StreamEvent"]: ...

    def close(self) -> None: ...
