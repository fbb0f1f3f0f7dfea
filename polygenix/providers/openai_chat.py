"""OpenAI Chat Completions wire format, spoken by OpenAI, Groq, DeepSeek, Mistral, OpenRouter and
OpenAI-compatible servers (vLLM, LM Studio, llama.cpp server, Together...).

Reference: https://platform.openai.com/docs/api-reference/chat/create
Bearer auth; the system prompt is the first message with role "system"; the reply is
choices[0].message.content with choices[0].finish_reason; usage.prompt_tokens and
usage.completion_tokens count tokens.
"""

from collections.abc import Mapping
from typing import Any

from .base import ChatMessage, Completion, MalformedResponse


def path(model: str) -> str:
    return "/chat/completions"


def headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def build_payload(messages: list[ChatMessage], model: str, config: Mapping[str, Any]) -> dict:
    return {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
    }


def parse_response(data: dict, model: str) -> Completion:
    choice = data["choices"][0]
    content = choice["message"].get("content")
    if not isinstance(content, str) or not content:
        raise MalformedResponse("no text in choices[0].message.content")
    usage = data.get("usage") or {}
    return Completion(
        content=content,
        model=data.get("model") or model,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )
