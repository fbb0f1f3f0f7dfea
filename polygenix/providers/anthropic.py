"""Anthropic Messages API wire format.

Reference: https://docs.anthropic.com/en/api/messages
Auth by `x-api-key` with `anthropic-version: 2023-06-01`; the system prompt is the top-level
`system` field, not a message; `max_tokens` is required; the reply is the text blocks of `content`,
with `stop_reason` and usage.input_tokens / usage.output_tokens.
"""

from collections.abc import Mapping
from typing import Any

from .base import ChatMessage, Completion, MalformedResponse

API_VERSION = "2023-06-01"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def path(model: str) -> str:
    return "/v1/messages"


def headers(key: str | None) -> dict[str, str]:
    return {"x-api-key": key or "", "anthropic-version": API_VERSION}


def build_payload(messages: list[ChatMessage], model: str, config: Mapping[str, Any]) -> dict:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": config["ANTHROPIC_MAX_TOKENS"],
        "messages": [
            {"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"
        ],
    }
    if system:
        payload["system"] = system
    return payload


def parse_response(data: dict, model: str) -> Completion:
    text = "".join(block["text"] for block in data["content"] if block.get("type") == "text")
    if not text:
        raise MalformedResponse("no text block in content")
    usage = data.get("usage") or {}
    reason = data.get("stop_reason")
    return Completion(
        content=text,
        model=data.get("model") or model,
        finish_reason=FINISH_REASONS.get(reason, reason),
        prompt_tokens=usage.get("input_tokens"),
        completion_tokens=usage.get("output_tokens"),
    )
