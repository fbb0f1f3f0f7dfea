"""Function tools through the Responses API: OpenAI's flat `tools` and `tool_choice`
(https://platform.openai.com/docs/guides/function-calling?api-mode=responses) read into the
provider layer's Tooling, and `function_call` / `function_call_output` items turned into chat
messages (an assistant message's `tool_calls`, a `tool` message) and back.

Built-in tools (web_search, file_search, code_interpreter, computer use, MCP, custom tools...)
are a 400 on `tools`; a tool_choice naming one a 400 on `tool_choice`.
"""

import re

import marshmallow as ma
from marshmallow import fields, post_load, validate

from ..providers import ChatMessage, NamedTool, Tool, ToolCall, ToolChoice
from .validation import Capped, Flag, JsonSchema, OneOf, Schema, Text, TextOrParts

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}\Z")  # matched from the start
MAX_TOOLS = 128
CHOICES = ("none", "auto", "required")
NAME_RULE = "must be 1 to 64 of a-z, A-Z, 0-9, _ and -."


def name(**kwargs) -> fields.String:
    """A function's name."""
    said = {"invalid": NAME_RULE, "required": NAME_RULE, "null": NAME_RULE}
    return fields.String(
        validate=validate.Regexp(NAME, error=NAME_RULE), error_messages=said, **kwargs
    )


class FunctionToolSchema(Schema):
    name = name(required=True)
    description = Text(allow_none=True)
    parameters = JsonSchema(allow_none=True)
    strict = Flag()

    @post_load
    def _tool(self, data, **kwargs) -> Tool:
        return Tool(
            data["name"], data.get("description"), data.get("parameters"), data.get("strict")
        )


TOOLS = Capped(
    OneOf(
        "type",
        {"function": FunctionToolSchema()},
        ": built-in tools ({kind!r}) are not supported here.",
    ),
    MAX_TOOLS,
    "tools",
    allow_none=True,
    error_messages={"invalid": f"must be a list of at most {MAX_TOOLS} tools."},
)


class ToolChoiceField(fields.Field):
    """ "none", "auto", "required" or {"type": "function", "name": ...}."""

    def __init__(self, **kwargs):
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> ToolChoice:
        if isinstance(value, str) and value in CHOICES:
            return value
        if isinstance(value, dict) and value.get("type") == "function":
            return NamedTool(value.get("name"))
        raise ma.ValidationError("must be none, auto, required or a function of tools.")


def check(tools: list[Tool], choice: ToolChoice | None) -> None:
    """Tool names unique, and a tool choice among the tools."""
    for n, tool in enumerate(tools):
        if any(t.name == tool.name for t in tools[:n]):
            said = f": the name {tool.name!r} is taken by another tool."
            raise ma.ValidationError({"tools": {n: [said]}})
    if choice == "required" and not tools:
        raise ma.ValidationError("required needs tools to choose from.", field_name="tool_choice")
    if isinstance(choice, NamedTool) and not any(t.name == choice.name for t in tools):
        said = f"names {choice.name!r}, which is not among the tools."
        raise ma.ValidationError(said, field_name="tool_choice")


CALL_ID = {"invalid": "must be a string without NUL characters.", "required": "is required."}


class CallItemSchema(Schema):
    """A function_call input item, kept as OpenAI lists it (its id, if not given, is made)."""

    id = fields.String(allow_none=True)
    call_id = Text(required=True, validate=validate.Length(min=1), error_messages=CALL_ID)
    name = name(required=True)
    arguments = Text(required=True, error_messages=CALL_ID)

    @post_load
    def _item(self, data, **kwargs) -> dict:
        return {
            "id": data.get("id"),
            "type": "function_call",
            "status": "completed",
            "call_id": data["call_id"],
            "name": data["name"],
            "arguments": data["arguments"],
        }


class OutputTextSchema(Schema):
    text = Text(required=True, error_messages=CALL_ID)

    @post_load
    def _text(self, data, **kwargs) -> str:
        return data["text"]


class OutputItemSchema(Schema):
    """A function_call_output input item, kept with its output as text."""

    id = fields.String(allow_none=True)
    call_id = Text(required=True, error_messages=CALL_ID)
    output = TextOrParts(
        fields.Nested(OutputTextSchema),
        required=True,
        error_messages={
            "invalid": "must be a string or a list of input_text parts.",
            "required": "must be a string or a list of input_text parts.",
            "null": "must be a string or a list of input_text parts.",
        },
    )

    @post_load
    def _item(self, data, **kwargs) -> dict:
        return {
            "id": data.get("id"),
            "type": "function_call_output",
            "status": "completed",
            "call_id": data["call_id"],
            "output": "".join(data["output"]),
        }


def add_call(messages: list[ChatMessage], item: dict) -> None:
    """A function_call item joins the assistant message just before it, else makes one."""
    call: ToolCall = {"id": item["call_id"], "name": item["name"], "arguments": item["arguments"]}
    if messages and messages[-1]["role"] == "assistant":
        messages[-1].setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})


def result_message(item: dict) -> ChatMessage:
    return {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}


def function_call(item: str, call: dict, status: str = "completed") -> dict:
    """A call the model made, as a function_call output item."""
    return {
        "id": item,
        "type": "function_call",
        "status": status,
        "call_id": call["id"],
        "name": call["name"],
        "arguments": call["arguments"],
    }


def call_items(calls, new_id) -> list[dict]:
    """A reply's tool calls as function_call output items."""
    return [function_call(new_id("fc"), call) for call in calls]


def echo(tool: Tool) -> dict:
    """A tool as the response object repeats it."""
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": tool.strict,
    }
