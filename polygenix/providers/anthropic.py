"""Anthropic Messages API wire format.

Reference: https://docs.anthropic.com/en/api/messages
Auth by `x-api-key` with `anthropic-version: 2023-06-01`; the system prompt is the top-level
`system` field, not a message; `max_tokens` (MAX_OUTPUT_TOKENS) is required; the reply is the
text blocks of `content`, with `stop_reason` and usage.input_tokens / usage.output_tokens. Streaming
(https://docs.anthropic.com/en/docs/build-with-claude/streaming): named SSE events message_start
(input usage), content_block_delta (text_delta), message_delta (stop_reason, cumulative output
usage), message_stop, plus ping and error.
"""

import json
from collections.abc import Mapping
from typing import Any

from .base import ChatMessage, Completion, MalformedResponse
from .streaming import SSEDecoder, SSERecord, StreamEvent

# Streams end with a `message_stop` event; a stream that stops before it was cut short.
ENDS_AT_EOF = False

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


def build_payload(
    messages: list[ChatMessage], model: str, config: Mapping[str, Any], **options
) -> dict:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": config["MAX_OUTPUT_TOKENS"],
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


def stream_path(model: str) -> str:
    return path(model)


def build_stream_payload(
    messages: list[ChatMessage], model: str, config: Mapping[str, Any], **options
) -> dict:
    return build_payload(messages, model, config) | {"stream": True}


def stream_decoder() -> SSEDecoder:
    return SSEDecoder()


def parse_stream_record(record: SSERecord) -> list[StreamEvent]:
    data = json.loads(record.data)
    kind = record.event or data.get("type")
    if kind == "message_start":
        message = data.get("message") or {}
        usage = message.get("usage") or {}
        return [
            StreamEvent(
                model=message.get("model"),
                prompt_tokens=usage.get("input_tokens"),
                completion_tokens=usage.get("output_tokens"),
            )
        ]
    if kind == "content_block_delta":
        delta = data.get("delta") or {}
        return (
            [StreamEvent(text=delta.get("text") or "")] if delta.get("type") == "text_delta" else []
        )
    if kind == "message_delta":
        usage = data.get("usage") or {}
        reason = (data.get("delta") or {}).get("stop_reason")
        return [
            StreamEvent(
                finish_reason=FINISH_REASONS.get(reason, reason),
                prompt_tokens=usage.get("input_tokens"),
                completion_tokens=usage.get("output_tokens"),
            )
        ]
    if kind == "message_stop":
        return [StreamEvent(done=True)]
    if kind == "error":
        error = data.get("error") or {}
        return [StreamEvent(error=str(error.get("message") or error.get("type") or "error"))]
    return []  # ping, content_block_start, content_block_stop
