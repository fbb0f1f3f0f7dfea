"""Google Gemini API (generateContent) wire format.

Reference: https://ai.google.dev/api/generate-content
Auth by `x-goog-api-key`; messages are `contents` of `parts`, with roles "user" and "model"; the
system prompt is `systemInstruction`; the reply is candidates[0].content.parts[].text with
`finishReason`, and usageMetadata.promptTokenCount / candidatesTokenCount count tokens.
Streaming: `:streamGenerateContent?alt=sse`, each SSE event a whole response chunk of the same
shape (the last with the final usageMetadata), and no terminator.
"""

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .base import ChatMessage, Completion, MalformedResponse
from .streaming import SSEDecoder, SSERecord, StreamEvent

# streamGenerateContent sends no terminator: the end of the body is the end of the reply.
ENDS_AT_EOF = True

ROLES = {"user": "user", "assistant": "model"}
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}


def path(model: str, method: str = "generateContent") -> str:
    model = model.removeprefix("models/")
    return f"/models/{quote(model, safe='-._~')}:{method}"


def headers(key: str | None) -> dict[str, str]:
    return {"x-goog-api-key": key or ""}


def build_payload(
    messages: list[ChatMessage], model: str, config: Mapping[str, Any], **options
) -> dict:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    payload: dict[str, Any] = {
        "generationConfig": {"maxOutputTokens": config["MAX_OUTPUT_TOKENS"]},
        "contents": [
            {"role": ROLES[m["role"]], "parts": [{"text": m["content"]}]}
            for m in messages
            if m["role"] != "system"
        ],
    }
    if system:
        payload["systemInstruction"] = {"parts": [{"text": system}]}
    return payload


def parse_response(data: dict, model: str) -> Completion:
    candidates = data.get("candidates") or []
    if not candidates:
        raise MalformedResponse("no candidates (prompt blocked?)")
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(part.get("text", "") for part in parts if not part.get("thought"))
    if not text:
        raise MalformedResponse("no text in candidates[0].content.parts")
    usage = data.get("usageMetadata") or {}
    reason = candidate.get("finishReason")
    return Completion(
        content=text,
        model=data.get("modelVersion") or model,
        finish_reason=FINISH_REASONS.get(reason, reason.lower() if reason else None),
        prompt_tokens=usage.get("promptTokenCount"),
        completion_tokens=usage.get("candidatesTokenCount"),
    )


def stream_path(model: str) -> str:
    return path(model, "streamGenerateContent") + "?alt=sse"


def build_stream_payload(
    messages: list[ChatMessage], model: str, config: Mapping[str, Any], **options
) -> dict:
    return build_payload(messages, model, config)


def stream_decoder() -> SSEDecoder:
    return SSEDecoder()


def parse_stream_record(record: SSERecord) -> list[StreamEvent]:
    chunk = json.loads(record.data)
    if chunk.get("error"):
        return [StreamEvent(error=str((chunk["error"] or {}).get("message") or "error"))]
    candidate = (chunk.get("candidates") or [{}])[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    usage = chunk.get("usageMetadata") or {}
    reason = candidate.get("finishReason")
    return [
        StreamEvent(
            text="".join(part.get("text", "") for part in parts if not part.get("thought")),
            finish_reason=FINISH_REASONS.get(reason, reason.lower()) if reason else None,
            prompt_tokens=usage.get("promptTokenCount"),
            completion_tokens=usage.get("candidatesTokenCount"),
            model=chunk.get("modelVersion"),
        )
    ]
