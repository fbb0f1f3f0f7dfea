"""The built-in offline model: answers `Echo: <your message>`, with no key and no network.

It lets a fresh install (and the test suite) hold real conversations end to end.
"""

from collections.abc import Mapping
from typing import Any

from .base import ChatMessage, Completion

NAME = "echo"


def default_model(config: Mapping[str, Any]) -> str:
    return "echo"


def models(config: Mapping[str, Any]) -> list[str]:
    return ["echo"]


def base_url(config: Mapping[str, Any]) -> None:
    return None


def missing_setting(config: Mapping[str, Any]) -> None:
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
