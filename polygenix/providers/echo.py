"""The built-in offline model: answers `Echo: <your message>`, with no key and no network.

It lets a fresh install (and the test suite) hold real conversations end to end.
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .base import ChatMessage, Completion
from .streaming import StreamEvent

NAME = "echo"


def default_model(config: Mapping[str, Any]) -> str:
    return "echo"


def models(config: Mapping[str, Any]) -> list[str]:
    return ["echo"]


def base_url(config: Mapping[str, Any]) -> None:
    return None


def missing_setting(config: Mapping[str, Any], model: str | None = None) -> None:
    return None


def complete(messages: list[ChatMessage], model: str, config: Mapping[str, Any]) -> Completion:
    reply = f"Echo: {messages[-1]['content']}"
    return Completion(
        content=reply,
        model=model,
        # Whitespace-separated words stand in for tokens, so usage is deterministic.
        prompt_tokens=sum(len(m["content"].split()) for m in messages),
        completion_tokens=len(reply.split()),
    )


class EchoStream:
    """The echo reply in three pieces cut between words, then the usage."""

    def __init__(self, completion: Completion):
        self.completion = completion

    def __iter__(self) -> Iterator[StreamEvent]:
        words = re.findall(r"\S+\s*", self.completion.content)
        pieces = min(3, len(words))
        cuts = [round(n * len(words) / pieces) for n in range(pieces + 1)]
        for start, end in zip(cuts, cuts[1:], strict=False):
            yield StreamEvent(text="".join(words[start:end]))
        yield StreamEvent(
            finish_reason=self.completion.finish_reason,
            prompt_tokens=self.completion.prompt_tokens,
            completion_tokens=self.completion.completion_tokens,
            done=True,
        )

    def close(self) -> None:
        pass


def stream(messages: list[ChatMessage], model: str, config: Mapping[str, Any]) -> EchoStream:
    return EchoStream(complete(messages, model, config))
