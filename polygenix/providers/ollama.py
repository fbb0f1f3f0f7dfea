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

Images: a message's `images`, a list of base64 strings (an image URL is refused: Ollama needs
the bytes). Tools (https://docs.ollama.com/capabilities/tool-calling): `tools` in OpenAI's
shape; the model's `message.tool_calls` [{function: {name, arguments (an object)}}], whole in
one line when streamed, with no ids (PolyGenix gives them ids); results are "tool" messages
with `tool_name`. Ollama has no tool_choice: "none" sends no tools, a named function only that
one, "required" the tools as "auto" does (Ollama cannot force a call). A JSON response_format
is `format`: "json", or the schema itself
(https://docs.ollama.com/capabilities/structured-outputs).
"""

from typing import Any

from .base import ChatMessage, Completion, MalformedResponse, Options, StreamEvent
from .decoders import NDJSONDecoder
from .jsonbody import inline
from .messages import (
    ToolCall,
    UnsupportedInput,
    arguments_object,
    call_names,
    dumps,
    images_of,
    new_call_id,
    plain_copies,
    text_of,
)
from .tools import NamedTool, Tooling
from .wire import Call, StreamState, WireFormat, check_images


def _message(m: ChatMessage, names: dict[str, str]) -> dict[str, Any]:
    content = m["content"]
    if isinstance(content, str) and len(m) == 2:
        return {"role": m["role"], "content": content}
    out: dict[str, Any] = {"role": m["role"], "content": text_of(content)}
    images = [] if isinstance(content, str) else images_of(content)
    if images:
        out["images"] = [inline(i["source"]) for i in images if i["source"]["type"] == "base64"]
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {"function": {"name": c["name"], "arguments": arguments_object(c)}}
            for c in m["tool_calls"]
        ]
    if "tool_call_id" in m:
        if m["tool_call_id"] not in names:
            raise UnsupportedInput(
                f"the tool result for {m['tool_call_id']!r} answers no tool call of an earlier "
                "assistant message."
            )
        out["tool_name"] = names[m["tool_call_id"]]
    return out


def _tools(tooling: Tooling) -> list[dict[str, Any]]:
    choice = tooling.tool_choice
    if choice == "none":
        return []
    tools = []
    for tool in tooling.tools:
        if isinstance(choice, NamedTool) and tool.name != choice.name:
            continue
        function: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        function["parameters"] = tool.parameters or {"type": "object", "properties": {}}
        tools.append({"type": "function", "function": function})
    return tools


def _calls_of(message: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    found = []
    for item in message.get("tool_calls") or ():
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        arguments = function.get("arguments")
        text = arguments if isinstance(arguments, str) else dumps(arguments or {})
        call_id = item.get("id")
        found.append((call_id if isinstance(call_id, str) else None, str(function["name"]), text))
    return found


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
        sent = plain_copies(messages)
        if sent is None:
            check_images(messages, urls=False)
            names = call_names(messages)
            sent = [_message(m, names) for m in messages]
        payload: dict[str, Any] = {
            "model": model,
            "messages": sent,
            "stream": False,
            "options": options,
        }
        if asked.reasoning_effort is not None:
            payload["think"] = asked.reasoning_effort
        tooling = call.tooling
        if tools := _tools(tooling):
            payload["tools"] = tools
        fmt = tooling.json_format()
        if fmt is not None:
            schema = fmt.schema if fmt.type == "json_schema" else None
            payload["format"] = schema if schema is not None else "json"
        return payload

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        return options  # `think` is sent only when asked, whatever the model

    def parse_response(self, data: dict, model: str) -> Completion:
        message = data.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise MalformedResponse("no message.content")
        calls: list[ToolCall] = []
        seen: set[str] = set()
        for call_id, name, arguments in _calls_of(message):
            if not call_id or call_id in seen:
                call_id = new_call_id()
            seen.add(call_id)
            calls.append({"id": call_id, "name": name, "arguments": arguments})
        return Completion(
            content=message["content"],
            model=data.get("model") or model,
            finish_reason=data.get("done_reason") or ("stop" if data.get("done") else None),
            prompt_tokens=data.get("prompt_eval_count"),
            completion_tokens=data.get("eval_count"),
            reasoning=message.get("thinking") or None,
            tool_calls=tuple(calls),
        )

    def stream_decoder(self) -> NDJSONDecoder:
        return NDJSONDecoder()

    def parse_stream_record(
        self, line: dict[str, Any], state: StreamState | None = None
    ) -> list[StreamEvent]:
        if not isinstance(line, dict):
            raise ValueError("stream line is not a JSON object")
        if line.get("error"):
            return [StreamEvent(error=str(line["error"]))]
        done = bool(line.get("done"))
        message = line.get("message") or {}
        state = state or StreamState()
        deltas = []
        for call_id, name, arguments in _calls_of(message):
            deltas += state.whole(("call", len(state.calls)), name, call_id, arguments)
        return [
            StreamEvent(
                text=message.get("content") or "",
                reasoning=message.get("thinking") or "",
                tool_calls=tuple(deltas),
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
