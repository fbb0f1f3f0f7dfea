"""A streamed reply as OpenAI's chat.completion.chunk objects
(https://platform.openai.com/docs/api-reference/chat-streaming): a first delta with the role,
content deltas (reasoning as `reasoning_content`, as DeepSeek sends it), a last chunk with the
finish reason, a usage chunk with no choices when `stream_options.include_usage` asked for it,
then `data: [DONE]`. A failure once the stream has begun is a `data: {"error": {...}}` event,
and the stream ends there."""

import json

from ..chat.streaming import Events
from ..errors import openai_error

# The finish reasons OpenAI's clients know; any other a provider gives reads as "stop".
FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls"}


def finish_reason(reason: str | None) -> str:
    return reason if reason in FINISH_REASONS else "stop"


def _data(body: dict | str) -> str:
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return f"data: {text}\n\n"


class ChunkEvents(Events):
    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool):
        self.base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self.include_usage = include_usage

    def _chunk(self, delta: dict, finish: str | None = None) -> str:
        body = self.base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if self.include_usage:
            body["usage"] = None
        return _data(body)

    def start(self, turn) -> str:
        return self._chunk({"role": "assistant", "content": ""})

    def reasoning(self, text: str) -> str:
        return self._chunk({"reasoning_content": text})

    def delta(self, text: str) -> str:
        return self._chunk({"content": text})

    def done(self, turn, reply) -> str:
        events = self._chunk({}, finish_reason(reply.finish_reason))
        if self.include_usage:
            prompt, written = reply.prompt_tokens or 0, reply.completion_tokens or 0
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": written,
                "total_tokens": prompt + written,
            }
            events += _data(self.base | {"choices": [], "usage": usage})
        return events + _data("[DONE]")

    def error(self, status: int, message: str) -> str:
        return _data(openai_error(status, message, None))
