"""Google Gemini API (generateContent) wire format.

Reference: https://ai.google.dev/api/generate-content
Auth by `x-goog-api-key`; messages are `contents` of `parts`, with roles "user" and "model"; the
system prompt is `systemInstruction`; the reply is candidates[0].content.parts[].text with
`finishReason`, and usageMetadata.promptTokenCount / candidatesTokenCount count tokens.
Streaming: `:streamGenerateContent?alt=sse`, each SSE event a whole response chunk of the same
shape (the last with the final usageMetadata), and no terminator. Errors follow google.rpc.Status:
{"error": {"code", "message", "status", "details": [ErrorInfo {"reason"}, RetryInfo
{"retryDelay": "3.5s"}...]}}; an invalid key is a 400 with reason API_KEY_INVALID.
"""

import re
from typing import Any
from urllib.parse import quote

from .base import ChatMessage, Completion, MalformedResponse, StreamEvent
from .decoders import SSERecord
from .wire import WireFormat, sse_json

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
_DELAY = re.compile(r"\d+(\.\d+)?s")


def _details(body: Any) -> list[dict]:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _finish_reason(reason: str | None) -> str | None:
    return FINISH_REASONS.get(reason, reason.lower()) if reason else None


class Gemini(WireFormat):
    # streamGenerateContent sends no terminator: the end of the body is the end of the reply.
    ENDS_AT_EOF = True

    def path(self, model: str, method: str = "generateContent") -> str:
        model = model.removeprefix("models/")
        return f"/models/{quote(model, safe='-._~')}:{method}"

    def stream_path(self, model: str) -> str:
        return self.path(model, "streamGenerateContent") + "?alt=sse"

    def headers(self, key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": key or ""}

    def build_payload(self, messages: list[ChatMessage], model: str, max_tokens: int) -> dict:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        payload: dict[str, Any] = {
            "generationConfig": {"maxOutputTokens": max_tokens},
            "contents": [
                {"role": ROLES[m["role"]], "parts": [{"text": m["content"]}]}
                for m in messages
                if m["role"] != "system"
            ],
        }
        if system:
            payload["systemInstruction"] = {"parts": [{"text": system}]}
        return payload

    def build_stream_payload(
        self, messages: list[ChatMessage], model: str, max_tokens: int
    ) -> dict:
        return self.build_payload(messages, model, max_tokens)  # streaming is in the path

    def parse_response(self, data: dict, model: str) -> Completion:
        candidates = data.get("candidates") or []
        if not candidates:
            raise MalformedResponse("no candidates (prompt blocked?)")
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(part.get("text", "") for part in parts if not part.get("thought"))
        if not text:
            raise MalformedResponse("no text in candidates[0].content.parts")
        usage = data.get("usageMetadata") or {}
        return Completion(
            content=text,
            model=data.get("modelVersion") or model,
            finish_reason=_finish_reason(candidate.get("finishReason")),
            prompt_tokens=usage.get("promptTokenCount"),
            completion_tokens=usage.get("candidatesTokenCount"),
        )

    def parse_stream_record(self, record: SSERecord) -> list[StreamEvent]:
        chunk = sse_json(record)
        if chunk.get("error"):
            return [StreamEvent(error=str((chunk["error"] or {}).get("message") or "error"))]
        candidate = (chunk.get("candidates") or [{}])[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        usage = chunk.get("usageMetadata") or {}
        return [
            StreamEvent(
                text="".join(part.get("text", "") for part in parts if not part.get("thought")),
                finish_reason=_finish_reason(candidate.get("finishReason")),
                prompt_tokens=usage.get("promptTokenCount"),
                completion_tokens=usage.get("candidatesTokenCount"),
                model=chunk.get("modelVersion"),
            )
        ]

    def error_reasons(self, body: Any) -> set[str]:
        reasons = super().error_reasons(body)
        return reasons | {str(d["reason"]) for d in _details(body) if d.get("reason")}

    def retry_delay(self, body: Any) -> float | None:
        for detail in _details(body):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and _DELAY.fullmatch(delay):
                return float(delay[:-1])
        return None
