"""Anthropic Messages API wire format.

Reference: https://docs.anthropic.com/en/api/messages
Auth by `x-api-key` with `anthropic-version: 2023-06-01`; the system prompt is the top-level
`system` field, not a message; `max_tokens` is required; the reply is the text blocks of
`content` (thinking blocks hold the model's reasoning), with `stop_reason` and usage.input_tokens
/ output_tokens (input excludes cache_read_input_tokens and cache_creation_input_tokens).
Streaming (https://docs.anthropic.com/en/docs/build-with-claude/streaming): named SSE events
message_start (input usage), content_block_delta (text_delta, thinking_delta), message_delta
(stop_reason, cumulative output usage), message_stop, plus ping and error. Errors:
{"type": "error", "error": {"type", "message"}}. Extended thinking
(https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking) is asked for with
`thinking: {"type": "enabled", "budget_tokens"}` (at least 1024, less than max_tokens), and then
takes no temperature and a top_p of at least 0.95 only.

Tools (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use), images
(https://docs.anthropic.com/en/docs/build-with-claude/vision) and structured outputs
(https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs): see
anthropic_tools.py.
"""

from typing import Any

from . import anthropic_tools
from .base import ChatMessage, Completion, Options, StreamEvent
from .decoders import SSERecord
from .reasoning import BUDGETS
from .wire import Call, StreamState, WireFormat, sse_json, without

API_VERSION = "2023-06-01"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}
MIN_BUDGET = 1024


def _usage(usage: dict) -> dict:
    cached = usage.get("cache_read_input_tokens")
    written = usage.get("cache_creation_input_tokens")
    prompt = usage.get("input_tokens")
    if prompt is not None:  # the whole prompt, as other providers count it
        prompt += (cached or 0) + (written or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.get("output_tokens"),
        "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("thinking_tokens"),
        "cached_tokens": cached,
    }


def _finish_reason(reason: str | None) -> str | None:
    return FINISH_REASONS.get(reason, reason) if reason is not None else None


def budget(call: Call) -> int | None:
    """The thinking budget an effort asks for, within max_tokens; None when none fits."""
    effort = call.options.reasoning_effort
    if effort is None:
        return None
    tokens = min(BUDGETS[effort], call.max_tokens - 1)
    return tokens if tokens >= MIN_BUDGET else None


class Anthropic(WireFormat):
    THINKS_WHEN_ASKED = True

    def path(self, model: str) -> str:
        return "/v1/messages"

    def models_path(self) -> str:
        return "/v1/models?limit=1000"

    def headers(self, key: str | None) -> dict[str, str]:
        return {"x-api-key": key or "", "anthropic-version": API_VERSION}

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        options = without(options, "seed")  # Anthropic takes none
        if options.temperature is not None and options.temperature > 1:
            options = without(options, "temperature")  # Anthropic's range is 0 to 1
        if options.reasoning_effort is not None:
            # Thinking takes no temperature, and a top_p of 0.95 or more only.
            options = without(options, "temperature")
            if options.top_p is not None and options.top_p < 0.95:
                options = without(options, "top_p")
        return options

    def build_payload(self, messages: list[ChatMessage], model: str, call: Call) -> dict:
        system = anthropic_tools.system_prompt(messages, call.tooling)
        payload: dict[str, Any] = {
            "model": model,
            "max_tokens": call.max_tokens,
            "messages": anthropic_tools.turns(messages),
        }
        if system:
            payload["system"] = system
        payload |= anthropic_tools.tool_fields(call.tooling)
        options = call.options
        for name in ("temperature", "top_p"):
            if getattr(options, name) is not None:
                payload[name] = getattr(options, name)
        if options.stop is not None:
            payload["stop_sequences"] = list(options.stop)
        thinking = budget(call)
        if thinking is not None:
            payload["thinking"] = {"type": "enabled", "budget_tokens": thinking}
        return payload

    def parse_response(self, data: dict, model: str) -> Completion:
        blocks = [b for b in data["content"] if isinstance(b, dict)]
        text = "".join(b.get("text") or "" for b in blocks if b.get("type") == "text")
        thinking = "".join(b.get("thinking") or "" for b in blocks if b.get("type") == "thinking")
        reason = data.get("stop_reason")
        return Completion(
            content=text,
            model=data.get("model") or model,
            finish_reason=_finish_reason(reason),
            reasoning=thinking or None,
            tool_calls=anthropic_tools.calls(blocks),
            **_usage(data.get("usage") or {}),
        )

    def parse_stream_record(
        self, record: SSERecord, state: StreamState | None = None
    ) -> list[StreamEvent]:
        data = sse_json(record)
        kind = record.event or data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            return [StreamEvent(model=message.get("model"), **_usage(message.get("usage") or {}))]
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            fragment = delta.get("type")
            if fragment == "text_delta":
                return [StreamEvent(text=delta.get("text") or "")]
            if fragment == "thinking_delta":
                return [StreamEvent(reasoning=delta.get("thinking") or "")]
            if fragment != "input_json_delta":
                return []  # signature_delta
        if kind in ("content_block_start", "content_block_delta", "content_block_stop"):
            calls = anthropic_tools.block_deltas(kind, data, state or StreamState())
            return [StreamEvent(tool_calls=tuple(calls))] if calls else []
        if kind == "message_delta":
            usage = {k: v for k, v in _usage(data.get("usage") or {}).items() if v is not None}
            reason = (data.get("delta") or {}).get("stop_reason")
            return [StreamEvent(finish_reason=_finish_reason(reason), **usage)]
        if kind == "message_stop":
            return [StreamEvent(done=True)]
        if kind == "error":
            error = data.get("error") or {}
            return [StreamEvent(error=str(error.get("message") or error.get("type") or "error"))]
        return []  # ping
