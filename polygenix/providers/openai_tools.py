"""Messages, tools and structured output in OpenAI's Chat Completions shapes, and the tool calls
of its replies and streams, for every provider of that format (see openai_chat.py).

References: https://platform.openai.com/docs/api-reference/chat/create (messages' content parts
`text` and `image_url` {url, detail}; an assistant message's `tool_calls` [{id, type:
"function", function: {name, arguments}}] with content null; `tool` messages {tool_call_id,
content}; `tools`, `tool_choice`, `parallel_tool_calls`, `response_format`) and
https://platform.openai.com/docs/api-reference/chat-streaming (`delta.tool_calls` [{index, id,
type, function: {name, arguments}}], the first of a call with its id and name, later ones its
index and a fragment of its arguments).
"""

from collections.abc import Mapping
from typing import Any

from .base import ToolCallDelta
from .jsonbody import Inline, inline
from .messages import ChatMessage, ContentPart, ToolCall, dumps, new_call_id, text_of
from .tools import NamedTool, ResponseFormat, Tooling
from .wire import StreamState


def _part(part: ContentPart) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    source = part["source"]
    url: str | Inline
    if source["type"] == "url":
        url = source["url"]
    else:
        url = inline(source, f"data:{source['media_type']};base64,")
    image: dict[str, Any] = {"url": url}
    if "detail" in part:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def message(m: ChatMessage, ids: Mapping[str, str]) -> dict[str, Any]:
    """One message as OpenAI takes it; `ids` maps call ids the provider would refuse."""
    content = m["content"]
    if isinstance(content, str) and len(m) == 2:
        return {"role": m["role"], "content": content}
    role = m["role"]
    out: dict[str, Any] = {"role": role}
    if role == "user" and not isinstance(content, str):
        out["content"] = [_part(p) for p in content]
    else:
        out["content"] = text_of(content)
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": ids.get(c["id"], c["id"]),
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in m["tool_calls"]
        ]
        if not out["content"]:
            out["content"] = None  # as OpenAI sends a reply that only calls tools
    if "tool_call_id" in m:
        out["tool_call_id"] = ids.get(m["tool_call_id"], m["tool_call_id"])
    return out


def tool_fields(tooling: Tooling, *, parallel: bool = True) -> dict[str, Any]:
    """`tools`, `tool_choice` and `parallel_tool_calls` (sent only with tools: OpenAI refuses
    the other two without them). `parallel` False: the provider takes no parallel_tool_calls."""
    if not tooling.tools:
        return {}
    tools = []
    for tool in tooling.tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        if tool.parameters is not None:
            function["parameters"] = tool.parameters
        if tool.strict is not None:
            function["strict"] = tool.strict
        tools.append({"type": "function", "function": function})
    fields: dict[str, Any] = {"tools": tools}
    choice = tooling.tool_choice
    if isinstance(choice, NamedTool):
        fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        fields["tool_choice"] = choice
    if parallel and tooling.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = tooling.parallel_tool_calls
    return fields


def response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    schema: dict[str, Any] = {"name": fmt.name or "response"}
    if fmt.description is not None:
        schema["description"] = fmt.description
    schema["schema"] = fmt.schema if fmt.schema is not None else {"type": "object"}
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


def _arguments(value: Any) -> str:
    # Servers that give an object rather than JSON text (some OpenAI-compatible ones).
    if isinstance(value, str):
        return value
    return "" if value is None else dumps(value)


def calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """A reply message's tool calls, each with an id unique in the reply."""
    found: list[ToolCall] = []
    seen: set[str] = set()
    for item in message.get("tool_calls") or ():
        if not isinstance(item, dict):
            continue
        function = item.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            continue
        call_id = item.get("id")
        if not isinstance(call_id, str) or not call_id or call_id in seen:
            call_id = new_call_id()
        seen.add(call_id)
        found.append(
            {"id": call_id, "name": name, "arguments": _arguments(function.get("arguments"))}
        )
    return tuple(found)


def call_deltas(items: Any, state: StreamState) -> list[ToolCallDelta]:
    """A stream chunk's `delta.tool_calls` as deltas of our own numbering: a delta with an id
    or a name that its index has not had begins a call (Mistral sends each call whole, every
    one at index 0), any other continues the call at its index."""
    deltas: list[ToolCallDelta] = []
    for position, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        function = item.get("function") or {}
        key = item.get("index", position)
        call_id, name = item.get("id"), function.get("name")
        known = state.calls.get(key)
        fragment = _arguments(function.get("arguments"))
        if known is None or (call_id and call_id != known[1]):
            first = state.begin(key, str(name or ""), call_id if isinstance(call_id, str) else None)
            deltas.append(first)
            if fragment:
                deltas.append(state.fragment(first.index, fragment))
        elif fragment:
            deltas.append(state.fragment(known[0], fragment))
    return deltas


def instructions_message(text: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with `text` added to the system prompt (a system message first if none)."""
    if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
        first = messages[0] | {"content": messages[0]["content"] + "\n\n" + text}
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
