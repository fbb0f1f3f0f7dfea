"""Messages, tools and structured output in Anthropic's Messages shapes, and the tool calls of
its replies and streams.

- Images (https://docs.anthropic.com/en/docs/build-with-claude/vision): `{"type": "image",
  "source": {"type": "base64", "media_type", "data"}}` or `{"source": {"type": "url", "url"}}`;
  PNG, JPEG, GIF and WebP.
- Tools (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use):
  `tools` [{name, description, input_schema, strict}]; `tool_choice` {"type": "auto" | "any" |
  "tool" (with its name) | "none"}, with `disable_parallel_tool_use`; the assistant's calls are
  `tool_use` blocks {id, name, input (an object)}, their results `tool_result` blocks
  {tool_use_id, content} in the next user turn, consecutive results in one turn. Call ids must
  match ^[a-zA-Z0-9_-]+$: others a conversation carries are mapped, in the request only.
- Streaming: a call is a `content_block_start` whose block is a `tool_use`, then
  `input_json_delta` fragments (`partial_json`) of its input, then `content_block_stop`.
- Structured output (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs):
  a json_schema is `output_config: {"format": {"type": "json_schema", "schema"}}`, the schema
  brought within what Anthropic takes as its SDKs do (every object closed to other properties,
  the keywords it does not enforce moved into the description). Anthropic has no JSON mode:
  json_object is asked for in the system prompt.
"""

import re
from typing import Any

from .base import ToolCallDelta
from .jsonbody import inline
from .messages import (
    ChatMessage,
    ContentPart,
    ToolCall,
    arguments_object,
    dumps,
    new_call_id,
    plain,
    text_of,
)
from .tools import JSONSchema, NamedTool, Tool, Tooling, schema_instruction
from .wire import StreamState, check_images, derived_id, map_call_ids

CALL_ID = re.compile(r"[a-zA-Z0-9_-]{1,128}")
# What Anthropic's structured outputs enforce; other keywords go into the description.
KEPT = {
    "type",
    "description",
    "title",
    "enum",
    "const",
    "$ref",
    "required",
    "properties",
    "items",
    "anyOf",
    "allOf",
    "$defs",
    "definitions",
    "additionalProperties",
    "default",
}
FORMATS = {
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "uri",
    "ipv4",
    "ipv6",
    "uuid",
}


def system_prompt(messages: list[ChatMessage], tooling: Tooling) -> str:
    parts = [text_of(m["content"]) for m in messages if m["role"] == "system"]
    fmt = tooling.json_format()
    if fmt is not None and fmt.type == "json_object":
        parts.append(schema_instruction(fmt))
    return "\n\n".join(p for p in parts if p)


def _block(part: ContentPart) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    source = part["source"]
    if source["type"] == "url":
        return {"type": "image", "source": {"type": "url", "url": source["url"]}}
    return {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": source["media_type"],
            "data": inline(source),
        },
    }


def turns(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation as Anthropic's turns (the system prompt is apart)."""
    if plain(messages):
        return [
            {"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"
        ]
    check_images(messages)
    ids = map_call_ids(messages, CALL_ID, lambda i, n: "toolu_" + derived_id(i, n, 24))
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "system":
            continue
        if role == "tool":
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": ids.get(m.get("tool_call_id", ""), m.get("tool_call_id", "")),
            }
            if text := text_of(content):
                result["content"] = text
            if out and out[-1]["role"] == "user" and out[-1].get("results"):
                out[-1]["content"].append(result)  # consecutive results: one user turn
            else:
                out.append({"role": "user", "content": [result], "results": True})
            continue
        if role == "assistant" and m.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            if text := text_of(content):
                blocks.append({"type": "text", "text": text})
            for call in m["tool_calls"]:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": ids.get(call["id"], call["id"]),
                        "name": call["name"],
                        "input": arguments_object(call),
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        elif isinstance(content, str):
            out.append({"role": role, "content": content})
        elif role == "user":
            out.append({"role": role, "content": [_block(p) for p in content]})
        else:
            out.append({"role": role, "content": text_of(content)})
    for turn in out:
        turn.pop("results", None)
    return out


def strict_schema(schema: Any) -> Any:
    """`schema` as Anthropic's structured outputs take it."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
            out["allOf" if key == "allOf" else "anyOf"] = [strict_schema(v) for v in value]
        elif key == "items":
            out[key] = strict_schema(value)
        elif key == "format" and value in FORMATS:
            out[key] = value
        elif key == "minItems" and value in (0, 1):
            out[key] = value
        elif key == "additionalProperties":
            continue  # closed below, for every object
        elif key in KEPT:
            out[key] = value
        else:
            rest[key] = value
    if out.get("type") == "object" or "properties" in out:
        out["additionalProperties"] = False
    if rest:
        described = out.get("description")
        note = "{" + ", ".join(f"{k}: {dumps(v)}" for k, v in rest.items()) + "}"
        out["description"] = f"{described}\n\n{note}" if described else note
    return out


def _tool(tool: Tool) -> dict[str, Any]:
    schema: JSONSchema = tool.parameters or {"type": "object", "properties": {}}
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = strict_schema(schema) if tool.strict else schema
    if tool.strict:
        out["strict"] = True
    return out


def tool_fields(tooling: Tooling) -> dict[str, Any]:
    """`tools`, `tool_choice` and `output_config`."""
    fields: dict[str, Any] = {}
    fmt = tooling.json_format()
    if fmt is not None and fmt.type == "json_schema":
        schema = strict_schema(fmt.schema if fmt.schema is not None else {"type": "object"})
        fields["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if not tooling.tools:
        return fields
    fields["tools"] = [_tool(t) for t in tooling.tools]
    choice = tooling.tool_choice
    if choice == "none":
        fields["tool_choice"] = {"type": "none"}
        return fields
    if isinstance(choice, NamedTool):
        picked: dict[str, Any] = {"type": "tool", "name": choice.name}
    else:
        picked = {"type": "any" if choice == "required" else "auto"}
    if tooling.parallel_tool_calls is False:
        picked["disable_parallel_tool_use"] = True
    if choice is not None or len(picked) > 1:
        fields["tool_choice"] = picked
    return fields


def calls(blocks: list[dict[str, Any]]) -> tuple[ToolCall, ...]:
    found: list[ToolCall] = []
    seen: set[str] = set()
    for block in blocks:
        if block.get("type") != "tool_use" or not block.get("name"):
            continue
        call_id = block.get("id")
        if not isinstance(call_id, str) or not call_id or call_id in seen:
            call_id = new_call_id()
        seen.add(call_id)
        value = block.get("input")
        found.append(
            {
                "id": call_id,
                "name": str(block["name"]),
                "arguments": dumps(value if value is not None else {}),
            }
        )
    return tuple(found)


def block_deltas(kind: str, data: dict[str, Any], state: StreamState) -> list[ToolCallDelta]:
    """A tool_use block's start, its input_json_delta fragments, and its stop: a call whose
    input came in no fragment (a call with no arguments) gets "{}" at its stop."""
    key = ("block", data.get("index"))
    if kind == "content_block_start":
        block = data.get("content_block") or {}
        if block.get("type") != "tool_use":
            return []
        call_id = block.get("id")
        return [state.begin(key, str(block.get("name") or ""), call_id if call_id else None)]
    known = state.calls.get(key)
    if known is None:
        return []
    if kind == "content_block_stop":
        return [] if known[0] in state.with_arguments else [state.fragment(known[0], "{}")]
    fragment = (data.get("delta") or {}).get("partial_json") or ""
    return [state.fragment(known[0], fragment)] if fragment else []
