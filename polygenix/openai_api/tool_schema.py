"""The tool and structured-output fields of a Chat Completions request, as OpenAI defines them
(https://platform.openai.com/docs/api-reference/chat/create#chat-create-tools): `tools`,
`tool_choice`, `parallel_tool_calls`, `response_format`, an assistant message's `tool_calls`
and a `tool` message's `tool_call_id`, read into the provider layer's `Tooling` and messages.

Every refusal is a 400 in OpenAI's shape whose `param` names the field at fault. What needs the
whole request (unique tool names, a tool choice among the tools, a tool message answering an
earlier call) is checked by the request's schema (schemas.py) with `check`.
"""

import re

import marshmallow as ma
from marshmallow import fields, post_load, validate

from ..providers.messages import ToolCall
from ..providers.tools import NO_TOOLING, NamedTool, ResponseFormat, Tool, Tooling
from .validation import Capped, Flag, JsonSchema, OneOf, Schema, Text

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}\Z")  # matched from the start
MAX_TOOLS = 128
MAX_CALL_ID = 200  # OpenAI's ids are 30-40 characters; some clients make longer ones
CHOICES = ("none", "auto", "required")
NAME_RULE = "must be 1 to 64 letters, digits, underscores or dashes (^[a-zA-Z0-9_-]{1,64}$)."


def name(**kwargs) -> fields.String:
    """A function's name."""
    rule = NAME_RULE.replace("{", "{{").replace("}", "}}")  # marshmallow formats messages
    said = {"invalid": rule, "required": rule, "null": rule}
    return fields.String(
        validate=validate.Regexp(NAME, error=rule),
        error_messages=said,
        **kwargs,
    )


class FunctionSchema(Schema):
    error_messages = {"type": "must be an object."}

    name = name(required=True)
    description = Text(allow_none=True)
    parameters = JsonSchema(allow_none=True)
    strict = Flag()

    @post_load
    def _tool(self, data, **kwargs) -> Tool:
        return Tool(
            name=data["name"],
            description=data.get("description"),
            parameters=data.get("parameters"),
            strict=data.get("strict"),
        )


class ToolSchema(Schema):
    function = fields.Nested(
        FunctionSchema, required=True, error_messages={"required": "must be an object."}
    )

    @post_load
    def _tool(self, data, **kwargs) -> Tool:
        return data["function"]


TOOLS = Capped(
    OneOf("type", {"function": ToolSchema()}, 'must be an object of type "function".'),
    MAX_TOOLS,
    "tools",
    allow_none=True,
    error_messages={"invalid": "must be a list of function tools."},
)


class NamedFunctionSchema(Schema):
    name = fields.Raw(load_default=None)  # checked against the tools


class ToolChoice(fields.Field):
    """ "none", "auto", "required" or {"type": "function", "function": {"name": ...}}."""

    FUNCTION = fields.Nested(NamedFunctionSchema, required=True)
    refused = (
        'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}.'
    )

    def __init__(self, **kwargs):
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> str | NamedTool:
        if isinstance(value, str) and value in CHOICES:
            return value
        if not isinstance(value, dict) or value.get("type") != "function":
            raise ma.ValidationError(self.refused)
        try:
            return NamedTool(self.FUNCTION.deserialize(value.get("function"))["name"])
        except ma.ValidationError:
            raise ma.ValidationError(self.refused) from None


class JsonSchemaSpecSchema(Schema):
    error_messages = {"type": "must be an object."}

    name = name(required=True)
    schema = JsonSchema(allow_none=True)
    strict = Flag()
    description = Text(allow_none=True)


class JsonSchemaFormatSchema(Schema):
    json_schema = fields.Nested(
        JsonSchemaSpecSchema, required=True, error_messages={"required": "must be an object."}
    )

    @post_load
    def _format(self, data, **kwargs) -> ResponseFormat:
        spec = data["json_schema"]
        return ResponseFormat(
            "json_schema",
            name=spec["name"],
            schema=spec.get("schema"),
            strict=spec.get("strict"),
            description=spec.get("description"),
        )


class PlainFormatSchema(Schema):
    type = fields.String()

    @post_load
    def _format(self, data, **kwargs) -> ResponseFormat:
        return ResponseFormat(data["type"])


RESPONSE_FORMAT = OneOf(
    "type",
    {
        "text": PlainFormatSchema(),
        "json_object": PlainFormatSchema(),
        "json_schema": JsonSchemaFormatSchema(),
    },
    'must be of type "text", "json_object" or "json_schema".',
    allow_none=True,
)


class CallFunctionSchema(Schema):
    error_messages = {"type": "must be an object (name, arguments)."}

    name = name(required=True)
    arguments = Text(
        required=True,
        error_messages={
            "invalid": "must be a string (JSON).",
            "required": "must be a string (JSON).",
            "null": "must be a string (JSON).",
        },
    )


class ToolCallSchema(Schema):
    error_messages = {"type": 'must be a call of type "function".'}

    id = Text(
        required=True,
        validate=validate.Length(1, MAX_CALL_ID, error=f"must be a string of 1 to {MAX_CALL_ID}."),
        error_messages={"required": f"must be a string of 1 to {MAX_CALL_ID}."},
    )
    type = fields.String(
        validate=validate.Equal("function", error='must be "function".'),
    )
    function = fields.Nested(
        CallFunctionSchema,
        required=True,
        error_messages={"required": "must be an object (name, arguments)."},
    )

    @post_load
    def _call(self, data, **kwargs) -> ToolCall:
        function = data["function"]
        return {"id": data["id"], "name": function["name"], "arguments": function["arguments"]}


TOOL_CALLS = fields.List(
    fields.Nested(ToolCallSchema),
    validate=validate.Length(min=1, error="must be a non-empty list of calls."),
    allow_none=True,
    error_messages={"invalid": "must be a non-empty list of calls."},
)


def _unique_names(tools: list[Tool]) -> None:
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ma.ValidationError(
            f"must have unique names: {twice!r} is given twice.", field_name="tools"
        )


def _choice_among(choice, tools: list[Tool]) -> None:
    if choice == "required" and not tools:
        raise ma.ValidationError('"required" is only allowed with tools.', field_name="tool_choice")
    if isinstance(choice, NamedTool) and choice.name not in {t.name for t in tools}:
        raise ma.ValidationError(
            f"names {choice.name!r}, which is not one of the tools.", field_name="tool_choice"
        )


def _answered_calls(messages: list) -> None:
    """Call ids unique in the request; each tool message answers a call made before it."""
    known: set[str] = set()
    for index, message in enumerate(messages):
        for n, call in enumerate(message.get("tool_calls", ())):
            if call["id"] in known:
                said = f"{call['id']!r} is not a unique call id."
                raise ma.ValidationError({"messages": {index: {"tool_calls": {n: {"id": [said]}}}}})
            known.add(call["id"])
        if message["role"] == "tool" and message["tool_call_id"] not in known:
            said = "must be the id of a tool call of an earlier assistant message."
            raise ma.ValidationError({"messages": {index: {"tool_call_id": [said]}}})


def check(data: dict, messages: list) -> None:
    """What the request's tooling must be as a whole; `messages` as read."""
    tools = data.get("tools") or []
    _unique_names(tools)
    _choice_among(data.get("tool_choice"), tools)
    _answered_calls(messages)


def tooling(data: dict) -> Tooling:
    """The request's tools, tool choice and response format (NO_TOOLING when it has none)."""
    tools = tuple(data.get("tools") or ())
    choice = data.get("tool_choice")
    parallel = data.get("parallel_tool_calls")
    fmt = data.get("response_format")
    if not tools and fmt is None and choice is None and parallel is None:
        return NO_TOOLING
    return Tooling(tools, choice, parallel if tools else None, fmt)
