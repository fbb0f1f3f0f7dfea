"""What every provider client shares: the message shape, the result, and the one error type."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict


class ChatMessage(TypedDict):
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ProviderError(Exception):
    """A provider call failed; `status` is what the API answers (429, 502, 503, 504...)."""

    def __init__(self, message: str, *, status: int = 502, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class Provider(Protocol):
    """A provider client module: a name, a default model, and one blocking call."""

    NAME: str

    def default_model(self, config: Mapping[str, Any]) -> str: ...

    def is_configured(self, config: Mapping[str, Any]) -> bool: ...

    def complete(
        self, messages: list[ChatMessage], model: str, config: Mapping[str, Any]
    ) -> Completion: ...
