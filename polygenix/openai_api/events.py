"""A streamed reply as OpenAI's chat.completion.chunk objects
(https://platform.openai.com/docs/api-reference/chat-streaming): a first delta with the role,
content deltas (reasoning as `reasoning_content`, as DeepSeek sends it), tool call deltas (a
call's first with its `index`, `id`, `type` and `function.name`, later ones its `index` and
`function.arguments` fragments), a last chunk with the finish reason, a usage chunk with no
choices when `stream_options.include_usage` asked for it, then `data: [DONE]`. A failure once
the stream has begun is a `data: {"error": {...}}` event, and the stream ends there."""

import json

from ..chat.streaming import Events
from ..errors import openai_error
from ..providers.base import ToolCallDelta

# The finish reasons OpenAI's clients know; any other a provider gives reads as "stop".
FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls"}


def finish_reason(reason: str | None) -> str:
    return reason if reason in FINISH_REASONS else "stop"


def _data(body: dict | str) -> str:
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return f"data: {text}\n\n"


def tool_call(call: dict) -> dict:
    """A stored or completed call as OpenAI's message.tool_calls[] entry."""
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": call["arguments"]},
    }


def _call_delta(delta: ToolCallDelta) -> dict:
    if delta.id is None:  # a later fragment of a call begun earlier
        return {"index": delta.index, "function": {"arguments": delta.arguments}}
    return {
        "index": delta.index,
        "id": delta.id,
        "type": "function",
        "function": {"name": delta.name or "", "arguments": delta.arguments},
    }


class ChunkEvents(Events):
    """With `tools_allowed`, the first chunk waits for the reply's first piece, as OpenAI's
    does: a reply that only calls tools then begins with `content: null` and its first call."""

    def __init__(
        self,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        tools_allowed: bool = False,
    ):
        self.base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self.include_usage = include_usage
        self.role_sent = not tools_allowed  # else: with the first piece

    def _chunk(self, delta: dict, finish: str | None = None) -> str:
        body = self.base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if self.include_usage:
            body["usage"] = None
        return _data(body)

    def _first(self, delta: dict, content: str | None) -> dict:
        if self.role_sent:
            return delta
        self.role_sent = True
        return {"role": "assistant", "content": content} | delta

    def start(self, turn) -> str:
        if not self.role_sent:
            return ""
        return self._chunk({"role": "assistant", "content": ""})

    def reasoning(self, text: str) -> str:
        return self._chunk(self._first({"reasoning_content": text}, ""))

    def delta(self, text: str) -> str:
        return self._chunk(self._first({"content": text}, ""))

    def tool_calls(self, deltas: tuple[ToolCallDelta, ...]) -> str:
        # One entry per call in a chunk, as OpenAI sends them: a provider that gives a call's
        # name and arguments as two pieces of one event (Gemini) has them joined here, else
        # clients that merge by entry (LangChain) see two calls.
        calls: list[dict] = []
        for delta in deltas:
            if calls and calls[-1]["index"] == delta.index and delta.id is None:
                calls[-1]["function"]["arguments"] += delta.arguments
            else:
                calls.append(_call_delta(delta))
        return self._chunk(self._first({"tool_calls": calls}, None))

    def done(self, turn, reply) -> str:
        events = self._chunk(self._first({}, ""), finish_reason(reply.finish_reason))
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
