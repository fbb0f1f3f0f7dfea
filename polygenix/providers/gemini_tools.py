"""Messages, tools and structured output in Gemini's generateContent shapes, and the function
calls of its replies and streams.

- Images (https://ai.google.dev/gemini-api/docs/image-understanding): `inlineData` {mimeType,
  data} parts, of PNG, JPEG, WebP, HEIC or HEIF. An image URL is refused (Gemini needs the
  bytes; PolyGenix never fetches a URL), and so is a GIF (not among Gemini's image types),
  which chat/images.py then sends as a PNG of its first frame.
- Function calling (https://ai.google.dev/gemini-api/docs/function-calling): `tools`
  [{"functionDeclarations": [{name, description, parametersJsonSchema}]}] (the JSON Schema as
  given, which Gemini takes in that field without conversion); `toolConfig.functionCallingConfig`
  {mode: AUTO | ANY | NONE, allowedFunctionNames}; the model's calls are `functionCall` parts
  {id, name, args (an object)}, their results `functionResponse` parts {id, name, response:
  {"output": text}} in a user turn, all the results of one turn together. Gemini has no switch
  for parallel calls: parallel_tool_calls is not sent.
- Thought signatures (https://ai.google.dev/gemini-api/docs/thought-signatures): a part's
  `thoughtSignature` (on the first call of a turn) must go back on that same part: it is kept in
  the call's provider_data and sent back with it.
- A call with no id from Gemini is given one; ids are sent back with calls and results.
- Structured output (https://ai.google.dev/gemini-api/docs/structured-output):
  `generationConfig.responseMimeType: "application/json"`, with `responseJsonSchema` for a
  json_schema.
"""

from typing import Any

from .base import ToolCallDelta
from .jsonbody import inline
from .messages import (
    ChatMessage,
    ContentPart,
    ToolCall,
    UnsupportedInput,
    arguments_object,
    call_names,
    dumps,
    new_call_id,
    plain,
    text_of,
)
from .tools import NamedTool, Tooling
from .wire import StreamState, check_images

ROLES = {"user": "user", "assistant": "model"}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
SIGNATURE = "thoughtSignature"


def _part(part: ContentPart) -> dict[str, Any]:
    if part["type"] == "text":
        return {"text": part["text"]}
    source = part["source"]
    if source["type"] != "base64":  # refused by check_images already
        raise UnsupportedInput("images cannot be given by URL to this provider.")
    return {"inlineData": {"mimeType": source["media_type"], "data": inline(source)}}


def _call_part(call: ToolCall) -> dict[str, Any]:
    part: dict[str, Any] = {
        "functionCall": {"id": call["id"], "name": call["name"], "args": arguments_object(call)}
    }
    signature = (call.get("provider_data") or {}).get(SIGNATURE)
    if signature:
        part[SIGNATURE] = signature
    return part


def contents(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation as Gemini's contents (the system prompt is apart)."""
    if plain(messages):
        return [
            {"role": ROLES[m["role"]], "parts": [{"text": m["content"]}]}
            for m in messages
            if m["role"] != "system"
        ]
    check_images(messages, urls=False, types=IMAGE_TYPES)
    names = call_names(messages)
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "system":
            continue
        if role == "tool":
            call_id = m.get("tool_call_id", "")
            if call_id not in names:
                raise UnsupportedInput(
                    f"the tool result for {call_id!r} answers no tool call of an earlier "
                    "assistant message."
                )
            response = {
                "functionResponse": {
                    "id": call_id,
                    "name": names[call_id],
                    "response": {"output": text_of(content)},
                }
            }
            if out and out[-1].get("results"):
                out[-1]["parts"].append(response)
            else:
                out.append({"role": "user", "parts": [response], "results": True})
            continue
        if isinstance(content, str):
            parts = [{"text": content}] if content or not m.get("tool_calls") else []
        elif role == "user":
            parts = [_part(p) for p in content]
        else:
            text = text_of(content)
            parts = [{"text": text}] if text or not m.get("tool_calls") else []
        if role == "assistant":
            parts += [_call_part(c) for c in m.get("tool_calls") or ()]
        out.append({"role": ROLES[role], "parts": parts})
    for turn in out:
        turn.pop("results", None)
    return out


def tool_fields(tooling: Tooling) -> dict[str, Any]:
    """`tools` and `toolConfig`."""
    if not tooling.tools:
        return {}
    declarations = []
    for tool in tooling.tools:
        declaration: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            declaration["description"] = tool.description
        if tool.parameters is not None:
            declaration["parametersJsonSchema"] = tool.parameters
        declarations.append(declaration)
    fields: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    choice = tooling.tool_choice
    if isinstance(choice, NamedTool):
        config: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    elif choice is not None:
        config = {"mode": {"none": "NONE", "auto": "AUTO", "required": "ANY"}[choice]}
    else:
        return fields
    fields["toolConfig"] = {"functionCallingConfig": config}
    return fields


def generation_fields(tooling: Tooling) -> dict[str, Any]:
    """What generationConfig gains for a JSON response_format."""
    fmt = tooling.json_format()
    if fmt is None:
        return {}
    fields: dict[str, Any] = {"responseMimeType": "application/json"}
    if fmt.type == "json_schema" and fmt.schema is not None:
        fields["responseJsonSchema"] = fmt.schema
    return fields


def _calls_of(parts: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    found = []
    for part in parts:
        call = part.get("functionCall")
        if isinstance(call, dict) and call.get("name"):
            signature = part.get(SIGNATURE)
            found.append((call, {SIGNATURE: signature} if isinstance(signature, str) else {}))
    return found


def calls(parts: list[dict[str, Any]]) -> tuple[ToolCall, ...]:
    out: list[ToolCall] = []
    seen: set[str] = set()
    for call, data in _calls_of(parts):
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id or call_id in seen:
            call_id = new_call_id()
        seen.add(call_id)
        found: ToolCall = {
            "id": call_id,
            "name": str(call["name"]),
            "arguments": dumps(call.get("args") or {}),
        }
        if data:
            found["provider_data"] = data
        out.append(found)
    return tuple(out)


def call_deltas(parts: list[dict[str, Any]], state: StreamState) -> list[ToolCallDelta]:
    """Gemini streams each call whole, in one part: its first delta, then its arguments."""
    deltas: list[ToolCallDelta] = []
    for call, data in _calls_of(parts):
        call_id = call.get("id")
        deltas += state.whole(
            ("call", len(state.calls)),
            str(call["name"]),
            call_id if isinstance(call_id, str) else None,
            dumps(call.get("args") or {}),
            **data,
        )
    return deltas
