"""Ollama chat API wire format.

Reference: https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
No key (a bearer token if OLLAMA_API_KEY is set, for proxies and Ollama's hosted API); the system
prompt is a "system" message; `"stream": false` gives one JSON object whose message.content is the
reply (message.thinking the model's reasoning), with done_reason, prompt_eval_count and
eval_count. Streaming: NDJSON, one such object per line with a piece of message.content or
message.thinking, the last with "done": true and the counts; an {"error": "..."} line reports a
failure mid-stream, and error bodies are {"error": "..."} too. Options go in `options`
(temperature, top_p, stop, num_predict); `think` asks a thinking model for an effort (a model
that cannot think refuses it, so it is sent only when an effort is asked for). Models:
GET /api/tags.
"""

from typing import Any

from .base import ChatMessage, Completion, MalformedResponse, Options, StreamEvent
from .decoders import NDJSONDecoder
from .wire import Call, WireFormat


class Ollama(WireFormat):
    def path(self, model: str) -> str:
        return "/api/chat"

    def models_path(self) -> str:
        return "/api/tags"

    def build_payload(self, messages: list[ChatMessage], model: str, call: Call) -> dict:
        options: dict[str, Any] = {"num_predict": call.max_tokens}
        asked = call.options
        if asked.temperature is not None:
            options["temperature"] = asked.temperature
        if asked.top_p is not None:
            options["top_p"] = asked.top_p
        if asked.stop is not None:
            options["stop"] = list(asked.stop)
        if asked.seed is not None:
            options["seed"] = asked.seed
        payload: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": False,
            "options": options,
        }
        if asked.reasoning_effort is not None:
            payload["think"] = asked.reasoning_effort
        return payload

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        return options  # `think` is sent only when asked, whatever the model

    def parse_response(self, data: dict, model: str) -> Completion:
        message = data.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise MalformedResponse("no message.content")
        return Completion(
            content=message["content"],
            model=data.get("model") or model,
            finish_reason=data.get("done_reason") or ("stop" if data.get("done") else None),
            prompt_tokens=data.get("prompt_eval_count"),
            completion_tokens=data.get("eval_count"),
            reasoning=message.get("thinking") or None,
        )

    def stream_decoder(self) -> NDJSONDecoder:
        return NDJSONDecoder()

    def parse_stream_record(self, line: dict) -> list[StreamEvent]:
        if not isinstance(line, dict):
            raise ValueError("stream line is not a JSON object")
        if line.get("error"):
            return [StreamEvent(error=str(line["error"]))]
        done = bool(line.get("done"))
        message = line.get("message") or {}
        return [
            StreamEvent(
                text=message.get("content") or "",
                reasoning=message.get("thinking") or "",
                model=line.get("model"),
                finish_reason=(line.get("done_reason") or "stop") if done else None,
                prompt_tokens=line.get("prompt_eval_count"),
                completion_tokens=line.get("eval_count"),
                done=done,
            )
        ]

    def parse_models(self, data: Any) -> list[str]:
        return [
            str(m.get("model") or m["name"]).removesuffix(":latest")
            for m in data["models"]
            if isinstance(m, dict) and (m.get("model") or m.get("name"))
        ]

    def error_message(self, body: Any) -> str | None:
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
        return super().error_message(body)
