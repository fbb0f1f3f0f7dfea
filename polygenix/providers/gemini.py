"""Google Gemini API (generateContent) wire format.

Reference: https://ai.google.dev/api/generate-content
Auth by `x-goog-api-key`; messages are `contents` of `parts`, with roles "user" and "model"; the
system prompt is `systemInstruction`; the reply is candidates[0].content.parts[].text with
`finishReason`, and usageMetadata.promptTokenCount / candidatesTokenCount count tokens.
Parts with `"thought": true` hold the model's reasoning, returned when
generationConfig.thinkingConfig.includeThoughts is asked for; usageMetadata.thoughtsTokenCount
counts it apart from candidatesTokenCount (both are billed as output). A prompt blocked by
safety has no candidates but a promptFeedback.blockReason. Streaming:
`:streamGenerateContent?alt=sse`, each SSE event a whole response chunk of the same shape, the
last with a finishReason and the final usageMetadata, and no other terminator: a stream that
ends before a finishReason was cut short. Gemini may abort a 200 stream with a JSON error object
written outside the SSE framing. Errors follow google.rpc.Status: {"error": {"code", "message",
"status", "details": [ErrorInfo {"reason"}, RetryInfo {"retryDelay": "3.5s"}, QuotaFailure
{"violations": [{"quotaId"}]}...]}}; an invalid key is a 400 with reason API_KEY_INVALID, and a
429 whose quota is per day is a quota used up, not a rate. Function calls, images, thought
signatures and structured output: see gemini_tools.py.
"""

import re
from typing import Any
from urllib.parse import quote

from . import gemini_tools
from .base import ChatMessage, Completion, MalformedResponse, StreamEvent
from .decoders import SSEDecoder, SSERecord
from .messages import text_of
from .reasoning import BUDGETS
from .wire import Call, StreamState, WireFormat, sse_json

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


def _usage(usage: dict) -> dict:
    thoughts = usage.get("thoughtsTokenCount")
    answer = usage.get("candidatesTokenCount")
    billed = answer if thoughts is None else (answer or 0) + thoughts
    return {
        "prompt_tokens": usage.get("promptTokenCount"),
        "completion_tokens": billed,
        "reasoning_tokens": thoughts,
        "cached_tokens": usage.get("cachedContentTokenCount"),
    }


def _parts(candidate: dict) -> tuple[str, str, list[dict]]:
    """A candidate's answer, its thought parts' text, and its parts."""
    parts = [p for p in (candidate.get("content") or {}).get("parts") or [] if isinstance(p, dict)]
    text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    thoughts = "".join(p.get("text", "") for p in parts if p.get("thought"))
    return text, thoughts, parts


class Gemini(WireFormat):
    def path(self, model: str, method: str = "generateContent") -> str:
        model = model.removeprefix("models/")
        return f"/models/{quote(model, safe='-._~')}:{method}"

    def stream_path(self, model: str) -> str:
        return self.path(model, "streamGenerateContent") + "?alt=sse"

    def models_path(self) -> str:
        return "/models?pageSize=1000"

    def headers(self, key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": key or ""}

    def build_payload(self, messages: list[ChatMessage], model: str, call: Call) -> dict:
        system = "\n\n".join(text_of(m["content"]) for m in messages if m["role"] == "system")
        generation: dict[str, Any] = {"maxOutputTokens": call.max_tokens}
        options = call.options
        if options.temperature is not None:
            generation["temperature"] = options.temperature
        if options.top_p is not None:
            generation["topP"] = options.top_p
        if options.stop is not None:
            generation["stopSequences"] = list(options.stop)
        if options.seed is not None:
            generation["seed"] = options.seed
        if call.reasoning:
            thinking: dict[str, Any] = {"includeThoughts": True}
            if options.reasoning_effort is not None:
                thinking["thinkingBudget"] = BUDGETS[options.reasoning_effort]
            generation["thinkingConfig"] = thinking
        generation |= gemini_tools.generation_fields(call.tooling)
        payload: dict[str, Any] = {
            "generationConfig": generation,
            "contents": gemini_tools.contents(messages),
        }
        if system:
            payload["systemInstruction"] = {"parts": [{"text": system}]}
        return payload | gemini_tools.tool_fields(call.tooling)

    def build_stream_payload(self, messages: list[ChatMessage], model: str, call: Call) -> dict:
        return self.build_payload(messages, model, call)  # streaming is in the path

    def parse_response(self, data: dict, model: str) -> Completion:
        candidates = data.get("candidates") or []
        if not candidates:
            blocked = (data.get("promptFeedback") or {}).get("blockReason")
            if blocked:
                raise MalformedResponse(f"the prompt was blocked ({blocked})")
            raise MalformedResponse("no candidates")
        candidate = candidates[0]
        text, thoughts, parts = _parts(candidate)
        return Completion(
            content=text,
            model=data.get("modelVersion") or model,
            finish_reason=_finish_reason(candidate.get("finishReason")),
            reasoning=thoughts or None,
            tool_calls=gemini_tools.calls(parts),
            **_usage(data.get("usageMetadata") or {}),
        )

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder(bare_json=True)

    def parse_stream_record(
        self, record: SSERecord, state: StreamState | None = None
    ) -> list[StreamEvent]:
        chunk = sse_json(record)
        if chunk.get("error"):
            return [StreamEvent(error=str((chunk["error"] or {}).get("message") or "error"))]
        blocked = (chunk.get("promptFeedback") or {}).get("blockReason")
        if blocked and not chunk.get("candidates"):
            return [StreamEvent(error=f"the prompt was blocked ({blocked})")]
        candidate = (chunk.get("candidates") or [{}])[0]
        text, thoughts, parts = _parts(candidate)
        reason = _finish_reason(candidate.get("finishReason"))
        return [
            StreamEvent(
                text=text,
                reasoning=thoughts,
                tool_calls=tuple(gemini_tools.call_deltas(parts, state or StreamState())),
                finish_reason=reason,
                model=chunk.get("modelVersion"),
                # The chunk with a finish reason is the last: Gemini has no other end marker.
                done=reason is not None,
                **_usage(chunk.get("usageMetadata") or {}),
            )
        ]

    def parse_models(self, data: Any) -> list[str]:
        return [
            str(m["name"]).removeprefix("models/")
            for m in data["models"]
            if isinstance(m, dict)
            and m.get("name")
            and "generateContent" in (m.get("supportedGenerationMethods") or ["generateContent"])
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

    def quota_exhausted(self, status: int, body: Any) -> bool:
        # RESOURCE_EXHAUSTED is a rate (per minute) or a quota (per day): the quota id says.
        for detail in _details(body):
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict) and "PerDay" in str(violation.get("quotaId")):
                    return True
        return super().quota_exhausted(status, body)
