"""Ollama chat API wire format.

Reference: https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
No key (a bearer token if OLLAMA_API_KEY is set, for proxies and Ollama's hosted API); the system
prompt is a "system" message; `"stream": false` gives one JSON object whose message.content is the
reply, with done_reason, prompt_eval_count and eval_count.
"""

from collections.abc import Mapping
from typing import Any

from .base import ChatMessage, Completion, MalformedResponse
from .openai_chat import headers

__all__ = ["build_payload", "headers", "parse_response", "path"]


def path(model: str) -> str:
    return "/api/chat"


def build_payload(messages: list[ChatMessage], model: str, config: Mapping[str, Any]) -> dict:
    return {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "stream": False,
    }


def parse_response(data: dict, model: str) -> Completion:
    content = (data.get("message") or {}).get("content")
    if not isinstance(content, str) or not content:
        raise MalformedResponse("no text in message.content")
    return Completion(
        content=content,
        model=data.get("model") or model,
        finish_reason=data.get("done_reason") or ("stop" if data.get("done") else None),
        prompt_tokens=data.get("prompt_eval_count"),
        completion_tokens=data.get("eval_count"),
    )
