"""OpenAI Chat Completions wire format, spoken by OpenAI, Groq, DeepSeek, Mistral, OpenRouter and
OpenAI-compatible servers (vLLM, LM Studio, llama.cpp server, Together...).

Reference: https://platform.openai.com/docs/api-reference/chat/create
Bearer auth; the system prompt is the first message with role "system"; the reply is
choices[0].message.content with choices[0].finish_reason; usage.prompt_tokens and
usage.completion_tokens count tokens. Streaming (https://platform.openai.com/docs/api-reference/
chat-streaming): SSE chunks with choices[0].delta.content, usage in a last chunk when
stream_options.include_usage is asked for (Groq also sends x_groq.usage), then `data: [DONE]`.
"""

import json
from collections.abc import Mapping
from typing import Any

from .base import ChatMessage, Completion, MalformedResponse
from .streaming import SSEDecoder, SSERecord, StreamEvent

# Streams are SSE ending in `data: [DONE]`; a stream that stops without it was cut short.
ENDS_AT_EOF = False


def path(model: str) -> str:
    return "/chat/completions"


def headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def build_payload(
    messages: list[ChatMessage],
    model: str,
    config: Mapping[str, Any],
    *,
    max_tokens_field: str = "max_tokens",
    **options,
) -> dict:
    """`max_tokens_field`: OpenAI and Groq now call the cap `max_completion_tokens`."""
    return {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        max_tokens_field: config["MAX_OUTPUT_TOKENS"],
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


def stream_path(model: str) -> str:
    return path(model)


def build_stream_payload(
    messages: list[ChatMessage],
    model: str,
    config: Mapping[str, Any],
    *,
    stream_usage: bool = True,
    **options,
) -> dict:
    """`stream_usage`: ask for usage with stream_options (Mistral takes no stream_options)."""
    payload = build_payload(messages, model, config, **options) | {"stream": True}
    if stream_usage:
        payload["stream_options"] = {"include_usage": True}
    return payload


def stream_decoder() -> SSEDecoder:
    return SSEDecoder()


def parse_stream_record(record: SSERecord) -> list[StreamEvent]:
    if record.data.strip() == "[DONE]":
        return [StreamEvent(done=True)]
    chunk = json.loads(record.data)
    if chunk.get("error"):
        error = chunk["error"]
        return [StreamEvent(error=str(error.get("message") if isinstance(error, dict) else error))]
    usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage") or {}
    events = [
        StreamEvent(
            text=(choice.get("delta") or {}).get("content") or "",
            finish_reason=choice.get("finish_reason"),
            model=chunk.get("model"),
        )
        for choice in (chunk.get("choices") or [])[:1]
    ]
    if usage:
        events.append(
            StreamEvent(
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                model=chunk.get("model"),
            )
        )
    return events
