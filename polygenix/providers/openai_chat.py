"""OpenAI Chat Completions wire format, spoken by OpenAI, Groq, DeepSeek, Mistral, OpenRouter and
OpenAI-compatible servers (vLLM, LM Studio, llama.cpp server, Together...).

Reference: https://platform.openai.com/docs/api-reference/chat/create
Bearer auth; the system prompt is the first message with role "system"; the reply is
choices[0].message.content with choices[0].finish_reason, or `refusal` instead of content;
usage.prompt_tokens and usage.completion_tokens count tokens (reasoning included), with
completion_tokens_details.reasoning_tokens and prompt_tokens_details.cached_tokens. Streaming
(https://platform.openai.com/docs/api-reference/chat-streaming): SSE chunks with
choices[0].delta.content, usage in a last chunk when stream_options.include_usage is asked for
(Groq also sends x_groq.usage), then `data: [DONE]`.

What each provider does differently (its subclass below):
- reasoning text: DeepSeek `reasoning_content`, OpenRouter and Groq `reasoning`, Mistral's
  Magistral models a `content` list of text and thinking chunks (streamed the same way);
- reasoning models reject sampling options: OpenAI's o-series and gpt-5 take no temperature,
  top_p or stop; DeepSeek's reasoner ignores temperature and top_p;
- OpenRouter reports failures in 200 bodies (`{"error": ...}` with no choices, or a chunk with
  `finish_reason: "error"`), and its 403 means moderation refused the input;
- tools and structured output (openai_tools.py): each passes them through as OpenAI defines
  them, except DeepSeek, which reads no images, takes no parallel_tool_calls and has JSON mode
  but no json_schema (https://api-docs.deepseek.com/guides/json_mode: a json_schema is asked
  for as JSON mode with the schema in the system prompt), and Mistral, whose call ids must be
  9 letters or digits (others a conversation carries are mapped to such ids, the same each
  time, in the request only).
"""

import re
from typing import Any

from . import openai_tools
from .base import ChatMessage, Completion, MalformedResponse, Options, StreamEvent
from .decoders import SSERecord
from .messages import plain_copies
from .tools import ResponseFormat, schema_instruction
from .wire import (
    Call,
    StreamState,
    WireFormat,
    check_images,
    derived_id,
    map_call_ids,
    sse_json,
    without,
)

# Mistral's finish reasons beyond OpenAI's.
FINISH_REASONS = {"model_length": "length"}
# "Tool call id was ... but must be a-z, A-Z, 0-9, with a length of 9" (Mistral's 400).
MISTRAL_CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")


def _text_and_thinking(content: Any) -> tuple[str, str]:
    """`content` as a string, or as Mistral's list of chunks: {"type": "text", "text"} and
    {"type": "thinking", "thinking": [text chunks]}."""
    if content is None:
        return "", ""
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        raise MalformedResponse("content is neither text nor a list of chunks")
    text, thinking = [], []
    for chunk in content:
        if not isinstance(chunk, dict):
            continue
        if chunk.get("type") == "text":
            text.append(str(chunk.get("text") or ""))
        elif chunk.get("type") == "thinking":
            inner = chunk.get("thinking")
            parts = inner if isinstance(inner, list) else [{"type": "text", "text": inner or ""}]
            thinking += [str(p.get("text") or "") for p in parts if isinstance(p, dict)]
    return "".join(text), "".join(thinking)


def _usage(usage: dict) -> dict:
    completion = usage.get("completion_tokens_details") or {}
    prompt = usage.get("prompt_tokens_details") or {}
    cached = prompt.get("cached_tokens")
    if cached is None:
        cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek
    return {
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "reasoning_tokens": completion.get("reasoning_tokens"),
        "cached_tokens": cached,
    }


class OpenAIChat(WireFormat):
    """The format as OpenAI-compatible servers speak it. `max_tokens_field`: OpenAI and Groq
    now call the cap `max_completion_tokens`; `stream_usage`: ask for usage with
    stream_options (Mistral takes no stream_options)."""

    seed_field = "seed"
    images = True  # the provider reads images (by data: URL or https URL)
    parallel_field = True  # it takes parallel_tool_calls
    json_schema = True  # it takes response_format json_schema

    def __init__(self, *, max_tokens_field: str = "max_tokens", stream_usage: bool = True):
        self.max_tokens_field = max_tokens_field
        self.stream_usage = stream_usage

    def path(self, model: str) -> str:
        return "/chat/completions"

    def call_ids(self, messages: list[ChatMessage]) -> dict[str, str]:
        """Call ids the provider would refuse, mapped to ones it takes (none by default)."""
        return {}

    def build_payload(self, messages: list[ChatMessage], model: str, call: Call) -> dict:
        sent = plain_copies(messages)
        if sent is None:
            check_images(messages, accepted=self.images)
            ids = self.call_ids(messages)
            sent = [openai_tools.message(m, ids) for m in messages]
        tooling = call.tooling
        fmt = tooling.json_format()
        if fmt is not None and fmt.type == "json_schema" and not self.json_schema:
            sent = openai_tools.instructions_message(schema_instruction(fmt), sent)
            fmt = ResponseFormat("json_object")
        payload: dict[str, Any] = {
            "model": model,
            "messages": sent,
            self.max_tokens_field: call.max_tokens,
        }
        payload |= openai_tools.tool_fields(tooling, parallel=self.parallel_field)
        if fmt is not None:
            payload["response_format"] = openai_tools.response_format(fmt)
        options = call.options
        for name in ("temperature", "top_p"):
            if getattr(options, name) is not None:
                payload[name] = getattr(options, name)
        if options.stop is not None:
            payload["stop"] = list(options.stop)
        if options.seed is not None:
            payload[self.seed_field] = options.seed
        return payload | self.reasoning_request(model, call)

    def reasoning_request(self, model: str, call: Call) -> dict:
        """What asks a reasoning model for its thinking, or for an effort."""
        effort = call.options.reasoning_effort
        return {"reasoning_effort": effort} if effort else {}

    def build_stream_payload(self, messages: list[ChatMessage], model: str, call: Call) -> dict:
        payload = super().build_stream_payload(messages, model, call)
        if self.stream_usage:
            payload["stream_options"] = {"include_usage": True}
        return payload

    def parse_response(self, data: dict, model: str) -> Completion:
        choice = data["choices"][0]
        message = choice["message"]
        text, thinking = _text_and_thinking(message.get("content"))
        reason = choice.get("finish_reason")
        if not text and message.get("refusal"):
            text, reason = str(message["refusal"]), "content_filter"
        reasoning = message.get("reasoning_content") or message.get("reasoning") or thinking
        return Completion(
            content=text,
            model=data.get("model") or model,
            finish_reason=FINISH_REASONS.get(reason, reason),
            reasoning=str(reasoning) if reasoning else None,
            tool_calls=openai_tools.calls(message),
            **_usage(data.get("usage") or {}),
        )

    def parse_stream_record(
        self, record: SSERecord, state: StreamState | None = None
    ) -> list[StreamEvent]:
        if record.data.strip() == "[DONE]":
            return [StreamEvent(done=True)]
        chunk = sse_json(record)
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            return [StreamEvent(error=str(message or "the provider reported an error"))]
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage") or {}
        events = []
        for choice in (chunk.get("choices") or [])[:1]:
            if choice.get("finish_reason") == "error":  # OpenRouter, with no error object
                return [StreamEvent(error="the provider reported an error mid-stream")]
            delta = choice.get("delta") or {}
            text, thinking = _text_and_thinking(delta.get("content"))
            refusal = delta.get("refusal") or ""
            # A refusal's text is the reply, and it stays a refusal whatever finish reason the
            # last chunk gives (see streams.merge).
            reason = "content_filter" if refusal else choice.get("finish_reason")
            calls = delta.get("tool_calls")
            events.append(
                StreamEvent(
                    text=text + refusal,
                    reasoning=delta.get("reasoning_content") or delta.get("reasoning") or thinking,
                    tool_calls=tuple(
                        openai_tools.call_deltas(calls, state or StreamState()) if calls else ()
                    ),
                    finish_reason=FINISH_REASONS.get(reason, reason),
                    model=chunk.get("model"),
                )
            )
        if usage:
            events.append(StreamEvent(model=chunk.get("model"), **_usage(usage)))
        return events


class OpenAI(OpenAIChat):
    """o-series and gpt-5 models take none of temperature, top_p and stop."""

    def __init__(self):
        super().__init__(max_tokens_field="max_completion_tokens")

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        options = super().accepted(model, options, reasoning)
        return without(options, "temperature", "top_p", "stop") if reasoning else options


class Groq(OpenAIChat):
    """Reasoning models return their thinking in `reasoning` when asked: `reasoning_format:
    "parsed"` (Qwen, DeepSeek R1 distills), `include_reasoning` (gpt-oss, which alone takes an
    effort of low, medium or high)."""

    def __init__(self):
        super().__init__(max_tokens_field="max_completion_tokens")

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        options = super().accepted(model, options, reasoning)
        return options if "gpt-oss" in model else without(options, "reasoning_effort")

    def reasoning_request(self, model: str, call: Call) -> dict:
        if not call.reasoning:
            return {}
        if "gpt-oss" in model:
            return {"include_reasoning": True} | super().reasoning_request(model, call)
        return {"reasoning_format": "parsed"}


class DeepSeek(OpenAIChat):
    """deepseek-reasoner ignores temperature and top_p and takes no effort; no images, no
    parallel_tool_calls, no json_schema."""

    images = False
    parallel_field = False
    json_schema = False

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        options = without(options, "reasoning_effort")
        return without(options, "temperature", "top_p") if reasoning else options


class Mistral(OpenAIChat):
    """No stream_options (usage comes anyway) and no reasoning_effort; the seed is
    `random_seed`."""

    seed_field = "random_seed"

    def __init__(self):
        super().__init__(stream_usage=False)

    def call_ids(self, messages: list[ChatMessage]) -> dict[str, str]:
        return map_call_ids(messages, MISTRAL_CALL_ID, lambda i, n: derived_id(i, n, 9))

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        return without(options, "reasoning_effort")

    def error_reasons(self, body: Any) -> set[str]:
        # An invalid model is a 400 of type invalid_model: the same as a 404 elsewhere.
        reasons = super().error_reasons(body)
        return reasons | {"model_not_found"} if "invalid_model" in reasons else reasons


class OpenRouter(OpenAIChat):
    """An effort is `reasoning: {"effort"}` for any model (OpenRouter passes it on where the
    model reasons); its 403 means moderation refused the input."""

    FORBIDDEN = "refused the input (moderation)"

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        return options

    def reasoning_request(self, model: str, call: Call) -> dict:
        effort = call.options.reasoning_effort
        return {"reasoning": {"effort": effort}} if effort else {}
