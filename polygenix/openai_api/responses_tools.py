"""Function tools through the Responses API: OpenAI's flat `tools` and `tool_choice`
(https://platform.openai.com/docs/guides/function-calling?api-mode=responses) read into the
provider layer's Tooling, and `function_call` / `function_call_output` items turned into chat
messages (an assistant message's `tool_calls`, a `tool` message) and back.

Built-in tools (web_search, file_search, code_interpreter, computer use, MCP, custom tools...)
are a 400 on `tools`; a tool_choice naming one a 400 on `tool_choice`.
"""

import re
from typing import Any

from ..providers import ChatMessage, NamedTool, Tool, ToolCall, ToolChoice
from .schemas import invalid

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_TOOLS = 128
CHOICES = ("none", "auto", "required")


def tools(body: dict) -> tuple[Tool, ...]:
    raw = body.get("tools")
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        invalid("tools", f"tools must be a list of at most {MAX_TOOLS} tools.")
    read: list[Tool] = []
    for n, tool in enumerate(raw):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            invalid("tools", f"tools[{n}]: built-in tools ({kind!r}) are not supported here.")
        name, parameters = tool.get("name"), tool.get("parameters")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            invalid("tools", f"tools[{n}].name must be 1 to 64 of a-z, A-Z, 0-9, _ and -.")
        if any(t.name == name for t in read):
            invalid("tools", f"tools[{n}]: the name {name!r} is taken by another tool.")
        if parameters is not None and not isinstance(parameters, dict):
            invalid("tools", f"tools[{n}].parameters must be a JSON Schema object.")
        described, strict = tool.get("description"), tool.get("strict")
        if described is not None and not isinstance(described, str):
            invalid("tools", f"tools[{n}].description must be a string.")
        if strict is not None and not isinstance(strict, bool):
            invalid("tools", f"tools[{n}].strict must be true or false.")
        read.append(Tool(name, described, parameters, strict))
    return tuple(read)


def tool_choice(body: dict, given: tuple[Tool, ...]) -> ToolChoice | None:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice in CHOICES:
        if choice == "required" and not given:
            invalid("tool_choice", "tool_choice required needs tools to choose from.")
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not any(t.name == name for t in given):
            invalid("tool_choice", f"tool_choice names {name!r}, which is not among the tools.")
        return NamedTool(name)
    invalid("tool_choice", "tool_choice must be none, auto, required or a function of tools.")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or "\x00" in value:
        invalid("input", f"{where} must be a string without NUL characters.")
    return value


def call_item(raw: dict, where: str, item_id: str) -> dict:
    """A function_call input item, checked and kept."""
    call_id, name = _text(raw.get("call_id"), f"{where}.call_id"), raw.get("name")
    if not call_id or not isinstance(name, str) or not NAME.fullmatch(name):
        invalid("input", f"{where} needs a call_id and a function name.")
    arguments = _text(raw.get("arguments"), f"{where}.arguments")
    return {
        "id": raw.get("id") if isinstance(raw.get("id"), str) else item_id,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output_item(raw: dict, where: str, item_id: str) -> dict:
    """A function_call_output input item, checked and kept (its output as text)."""
    call_id, output = _text(raw.get("call_id"), f"{where}.call_id"), raw.get("output")
    if isinstance(output, list):  # input_text parts
        texts = [p.get("text") for p in output if isinstance(p, dict)]
        if len(texts) != len(output) or not all(isinstance(t, str) for t in texts):
            invalid("input", f"{where}.output must be a string or a list of input_text parts.")
        output = "".join(texts)
    output = _text(output, f"{where}.output")
    return {
        "id": raw.get("id") if isinstance(raw.get("id"), str) else item_id,
        "type": "function_call_output",
        "status": "completed",
        "call_id": call_id,
        "output": output,
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
