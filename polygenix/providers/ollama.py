"""Ollama chat API wire format.

Reference: https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
No key (a bearer token if OLLAMA_API_KEY is set, for proxies and Ollama's hosted API); the system
prompt is a "system" message; `"stream": false` gives one JSON object whose message.content is the
reply, with done_reason, prompt_eval_count and eval_count. Streaming: NDJSON, one such object per
line with a piece of message.content, the last with "done": true and the counts; an
{"error": "..."} line reports a failure mid-stream, and error bodies are {"error": "..."} too.
"""

from typing import Any

from .base import ChatMessage, Completion, MalformedResponse, StreamEvent
from .decoders import NDJSONDecoder
from .wire import WireFormat


class Ollama(WireFormat):
    def path(self, model: str) -> str:
        return "/api/chat"

    def build_payload(self, messages: list[ChatMessage], model: str, max_tokens: int) -> dict:
        return {
            "model": model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": False,
            "options": {"num_predict": max_tokens},
        }

    def parse_response(self, data: dict, model: str) -> Completion:
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

    def stream_decoder(self) -> NDJSONDecoder:
        return NDJSONDecoder()

    def parse_stream_record(self, line: dict) -> list[StreamEvent]:
        if line.get("error"):
            return [StreamEvent(error=str(line["error"]))]
        done = bool(line.get("done"))
        return [
            StreamEvent(
                text=(line.get("message") or {}).get("content") or "",
                model=line.get("model"),
                finish_reason=(line.get("done_reason") or "stop") if done else None,
                prompt_tokens=line.get("prompt_eval_count"),
                completion_tokens=line.get("eval_count"),
                done=done,
            )
        ]

    def error_message(self, body: Any) -> str | None:
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
        return super().error_message(body)
