"""What a call may ask for besides the messages and the generation options: tools the model may
call, how it must choose among them, and the shape its answer must take.

These are not generation options: they go to `complete` and `stream` as `tooling`, and are not
recorded with the options of a stored reply.
"""

import json
from dataclasses import dataclass
from typing import Any, Literal

JSONSchema = dict[str, Any]


@dataclass(frozen=True)
class Tool:
    """A function the model may call (OpenAI's `{"type": "function", "function": ...}`)."""

    name: str  # ^[a-zA-Z0-9_-]{1,64}$, unique among the call's tools
    description: str | None = None
    parameters: JSONSchema | None = None  # a JSON Schema object; None: no parameters
    strict: bool | None = None  # the arguments must follow `parameters` exactly


@dataclass(frozen=True)
class NamedTool:
    """A tool_choice that names the one function the model must call."""

    name: str


ToolChoice = Literal["none", "auto", "required"] | NamedTool


@dataclass(frozen=True)
class ResponseFormat:
    """OpenAI's response_format: "text", "json_object", or "json_schema" with its schema."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None  # json_schema's name
    schema: JSONSchema | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(frozen=True)
class Tooling:
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None  # None: the provider's default ("auto" with tools)
    parallel_tool_calls: bool | None = None  # None: the provider's default (parallel allowed)
    response_format: ResponseFormat | None = None

    def calls_allowed(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    def json_format(self) -> ResponseFormat | None:
        """The response_format when it asks for JSON (not "text")."""
        fmt = self.response_format
        return fmt if fmt is not None and fmt.type != "text" else None


NO_TOOLING = Tooling()


def schema_instruction(fmt: ResponseFormat) -> str:
    """The instruction that asks for JSON where a provider has no way to enforce `fmt` (its
    words go in the system prompt)."""
    if fmt.type == "json_schema" and fmt.schema is not None:
        described = f" ({fmt.description})" if fmt.description else ""
        return (
            "Answer with a single JSON object and nothing else: no prose, no code fence. It "
            f"must conform to this JSON Schema, named {fmt.name or 'response'}{described}:\n"
            + json.dumps(fmt.schema, ensure_ascii=False)
        )
    return "Answer with a single JSON object and nothing else: no prose, no code fence."
