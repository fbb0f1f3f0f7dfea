"""Anthropic Messages API wire format.

Reference: https://docs.anthropic.com/en/api/messages
Auth by `x-api-key` with `anthropic-version: 2023-06-01`; the system prompt is the top-level
`system` field, not a message; `max_tokens` (MAX_OUTPUT_TOKENS) is required; the reply is the
text blocks of `content`, with `stop_reason` and usage.input_tokens / usage.output_tokens. Streaming
(https://docs.anthropic.com/en/docs/build-with-claude/streaming): named SSE events message_start
(input usage), content_block_delta (text_delta), message_delta (stop_reason, cumulative output
usage), message_stop, plus ping and error. Errors: {"type": "error", "error": {"type", "message"}}.
"""

from typing import Any

from .base import ChatMessage, Completion, MalformedResponse, StreamEvent
from .decoders import SSERecord
from .wire import WireFormat, sse_json

API_VERSION = "2023-06-01"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


class Anthropic(WireFormat):
    def path(self, model: str) -> str:
        return "/v1/messages"

    def headers(self, key: str | None) -> dict[str, str]:
        return {"x-api-key": key or "", "anthropic-version": API_VERSION}

    def build_payload(self, messages: list[ChatMessage], model: str, max_tokens: int) -> dict:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        payload: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "messages": [
                {"role": m["role"], "content": m["content"]}
                for m in messages
                if m["role"] != "system"
            ],
        }
        if system:
            payload["system"] = system
        return payload

    def parse_response(self, data: dict, model: str) -> Completion:
        text = "".join(b["text"] for b in data["content"] if b.get("type") == "text")
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

    def parse_stream_record(self, record: SSERecord) -> list[StreamEvent]:
        data = sse_json(record)
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
            if delta.get("type") != "text_delta":
                return []
            return [StreamEvent(text=delta.get("text") or "")]
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
