"""The tool and structured-output fields of a Chat Completions request, as OpenAI defines them
(https://platform.openai.com/docs/api-reference/chat/create#chat-create-tools): `tools`,
`tool_choice`, `parallel_tool_calls`, `response_format`, an assistant message's `tool_calls`
and a `tool` message's `tool_call_id`, read into the provider layer's `Tooling` and messages.

Every refusal is a 400 in OpenAI's shape whose `param` names the field at fault.
"""

import re
from typing import Any

from flask_smorest import abort

from ..providers.messages import ToolCall
from ..providers.tools import NO_TOOLING, NamedTool, ResponseFormat, Tool, Tooling

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_TOOLS = 128
MAX_CALL_ID = 200  # OpenAI's ids are 30-40 characters; some clients make longer ones
CHOICES = ("none", "auto", "required")


def invalid(param: str, message: str):
    """A 400 whose OpenAI error names `param` (as schemas.invalid, which imports this module)."""
    abort(400, message=message, errors={"json": {param: [message]}})


def _name(value: Any, param: str, where: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        invalid(
            param,
            f"{where} must be 1 to 64 letters, digits, underscores or dashes "
            "(^[a-zA-Z0-9_-]{1,64}$).",
        )
    return value


def _optional_text(value: Any, param: str, where: str) -> str | None:
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        invalid(param, f"{where} must be a string.")
    return value


def _optional_bool(value: Any, param: str, where: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        invalid(param, f"{where} must be true or false.")
    return value


def _schema(value: Any, param: str, where: str) -> dict | None:
    if value is not None and not isinstance(value, dict):
        invalid(param, f"{where} must be a JSON Schema object.")
    return value


def _tool(entry: Any, index: int) -> Tool:
    where = f"tools[{index}]"
    if not isinstance(entry, dict) or entry.get("type") != "function":
        invalid("tools", f'{where} must be an object of type "function".')
    function = entry.get("function")
    if not isinstance(function, dict):
        invalid("tools", f"{where}.function must be an object.")
    return Tool(
        name=_name(function.get("name"), "tools", f"{where}.function.name"),
        description=_optional_text(
            function.get("description"), "tools", f"{where}.function.description"
        ),
        parameters=_schema(function.get("parameters"), "tools", f"{where}.function.parameters"),
        strict=_optional_bool(function.get("strict"), "tools", f"{where}.function.strict"),
    )


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        invalid("tools", "tools must be a list of function tools.")
    if len(value) > MAX_TOOLS:
        invalid("tools", f"tools must hold at most {MAX_TOOLS} tools, not {len(value)}.")
    tools = tuple(_tool(entry, index) for index, entry in enumerate(value))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        invalid("tools", f"tools must have unique names: {twice!r} is given twice.")
    return tools


def _choice(value: Any, tools: tuple[Tool, ...]):
    if value is None:
        return None
    if isinstance(value, str) and value in CHOICES:
        if value == "required" and not tools:
            invalid("tool_choice", 'tool_choice "required" is only allowed with tools.')
        return value
    function = value.get("function") if isinstance(value, dict) else None
    if not isinstance(function, dict) or value.get("type") != "function":
        invalid(
            "tool_choice",
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}.',
        )
    name = function.get("name")
    if name not in {t.name for t in tools}:
        invalid("tool_choice", f"tool_choice names {name!r}, which is not one of the tools.")
    return NamedTool(name)


def _response_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        invalid(
            "response_format",
            'response_format must be of type "text", "json_object" or "json_schema".',
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        invalid("response_format", "response_format.json_schema must be an object.")
    where = "response_format.json_schema"
    return ResponseFormat(
        "json_schema",
        name=_name(spec.get("name"), "response_format", f"{where}.name"),
        schema=_schema(spec.get("schema"), "response_format", f"{where}.schema"),
        strict=_optional_bool(spec.get("strict"), "response_format", f"{where}.strict"),
        description=_optional_text(
            spec.get("description"), "response_format", f"{where}.description"
        ),
    )


def tooling(body: dict) -> Tooling:
    """The request's tools, tool choice and response format (NO_TOOLING when it has none)."""
    tools = _tools(body.get("tools"))
    choice = _choice(body.get("tool_choice"), tools)
    parallel = _optional_bool(
        body.get("parallel_tool_calls"), "parallel_tool_calls", "parallel_tool_calls"
    )
    fmt = _response_format(body.get("response_format"))
    if not tools and fmt is None and choice is None and parallel is None:
        return NO_TOOLING
    return Tooling(tools, choice, parallel if tools else None, fmt)


def calls(value: Any, index: int, known: set[str]) -> list[ToolCall]:
    """An assistant message's `tool_calls`; each id is added to `known` (ids unique in the
    request)."""
    where = f"messages[{index}].tool_calls"
    if not isinstance(value, list) or not value:
        invalid("messages", f"{where} must be a non-empty list of calls.")
    read: list[ToolCall] = []
    for n, call in enumerate(value):
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            invalid("messages", f'{where}[{n}] must be a call of type "function".')
        function = call.get("function")
        if not isinstance(function, dict):
            invalid("messages", f"{where}[{n}].function must be an object (name, arguments).")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not 0 < len(call_id) <= MAX_CALL_ID:
            invalid("messages", f"{where}[{n}].id must be a string of 1 to {MAX_CALL_ID}.")
        if "\x00" in call_id or call_id in known:
            invalid("messages", f"{where}[{n}].id {call_id!r} is not a unique call id.")
        name = _name(function.get("name"), "messages", f"{where}[{n}].function.name")
        arguments = function.get("arguments")
        if not isinstance(arguments, str) or "\x00" in arguments:
            invalid("messages", f"{where}[{n}].function.arguments must be a string (JSON).")
        known.add(call_id)
        read.append({"id": call_id, "name": name, "arguments": arguments})
    return read


def answered_call(message: dict, index: int, known: set[str]) -> str:
    """A tool message's `tool_call_id`: a call of an earlier assistant message."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or call_id not in known:
        invalid(
            "messages",
            f"messages[{index}].tool_call_id must be the id of a tool call of an earlier "
            "assistant message.",
        )
    return call_id
