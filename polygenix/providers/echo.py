"""The built-in offline model: answers `Echo: <your message>`, with no key and no network.

It lets a fresh install (and the test suite) hold real conversations end to end, tools and
structured output included, always the same way for the same input (docs/api.md, "Tools,
structured outputs and images"):

- tool_choice naming a function: it calls that function; "required": it calls every tool once,
  in order (the first only, with parallel_tool_calls false); the arguments are the smallest
  instance of the tool's parameters schema (`minimal_instance`). It never calls a tool just after
  tool results, nor with "auto" or "none": it answers in text.
- after tool results, the text is `Echo: ` and the results' contents, one a line;
- response_format json_object: the reply is `{"echo": "<the text it would have said>"}`;
  json_schema: the smallest instance of the schema;
- images: each is described after the text, `[image: image/png, 1234 bytes]` or
  `[image: <its URL>]`.
"""

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

from .base import (
    NO_OPTIONS,
    ChatMessage,
    Completion,
    Options,
    ProviderSettings,
    StreamEvent,
    ToolCallDelta,
)
from .messages import ToolCall, dumps, images_of, text_of
from .tools import NO_TOOLING, NamedTool, Tooling

MAX_DEPTH = 32
MAX_ITEMS = 100
FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def minimal_instance(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """The smallest value `schema` allows, as far as PolyGenix can tell: required properties
    only, minItems items, minLength characters, the least number in range, an enum's or a
    choice's first; a schema it cannot satisfy (too deep, recursive) gives null."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for name in ref[2:].split("/"):
            target = target.get(name) if isinstance(target, dict) else None
        return minimal_instance(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        choices = schema.get(key)
        if isinstance(choices, list) and choices:
            return minimal_instance(choices[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else None
    if kind == "object":
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        required = required if isinstance(required, list) else []
        return {
            name: minimal_instance(properties.get(name), root, depth + 1)
            for name in required
            if isinstance(name, str)
        }
    if kind == "array":
        count = schema.get("minItems")
        count = min(count, MAX_ITEMS) if isinstance(count, int) and count > 0 else 0
        return [minimal_instance(schema.get("items"), root, depth + 1) for _ in range(count)]
    if kind == "string":
        length = schema.get("minLength")
        fixed = FORMATS.get(str(schema.get("format")), "")
        return fixed or "a" * (min(length, 1000) if isinstance(length, int) and length > 0 else 0)
    if kind in ("integer", "number"):
        return _least_number(schema, kind == "integer")
    if kind == "boolean":
        return False
    return None


def _least_number(schema: dict[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum")
    above = schema.get("exclusiveMinimum")
    value: float = 0
    if isinstance(low, int | float) and value < low:
        value = low
    if isinstance(above, int | float) and value <= above:
        value = above + 1 if integer else above + 0.5
    if integer:
        return int(value) if value == int(value) else int(value) + 1
    return value


def _describe(message: ChatMessage) -> str:
    if isinstance(message["content"], str):
        return message["content"]
    words = [text_of(message["content"])]
    for image in images_of(message["content"]):
        source = image["source"]
        if source["type"] == "url":
            words.append(f"[image: {source['url']}]")
            continue
        try:
            size = len(base64.b64decode(source["data"], validate=True))
        except (binascii.Error, ValueError):
            size = 0
        words.append(f"[image: {source['media_type']}, {size} bytes]")
    return " ".join(w for w in words if w)


def _as_text(value: Any) -> str:
    """What json.dumps has no type for, as text: an inline image's base64 (bytes) its text."""
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _calls(messages: list[ChatMessage], tooling: Tooling) -> tuple[ToolCall, ...]:
    choice = tooling.tool_choice
    if not tooling.tools or messages[-1]["role"] == "tool":
        return ()
    if isinstance(choice, NamedTool):
        tools = [t for t in tooling.tools if t.name == choice.name]
    elif choice == "required":
        tools = list(tooling.tools[:1] if tooling.parallel_tool_calls is False else tooling.tools)
    else:
        return ()
    # Ids from the conversation so far: the same input gives the same ids, and a longer
    # conversation new ones.
    text = json.dumps(messages, sort_keys=True, default=_as_text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return tuple(
        {
            "id": f"call_{digest[:20]}{n:04d}",
            "name": tool.name,
            "arguments": dumps(minimal_instance(tool.parameters or {"type": "object"})),
        }
        for n, tool in enumerate(tools)
    )


class Echo:
    def __init__(self, settings: ProviderSettings | None = None):
        self.settings = settings or ProviderSettings("echo", default_model="echo")

    @property
    def name(self) -> str:
        return self.settings.name

    def missing_setting(self, model: str | None = None) -> None:
        return None

    def output_cap(self, model: str, options: Options = NO_OPTIONS) -> int:
        return 2**31 - 1  # it writes what it was sent, whatever the cap

    def check(self, messages: list[ChatMessage], model: str, tooling: Tooling = NO_TOOLING) -> None:
        """The echo takes every message, image and tool."""

    def complete(
        self,
        messages: list[ChatMessage],
        model: str,
        options: Options = NO_OPTIONS,
        *,
        request_id: str | None = None,
        tooling: Tooling = NO_TOOLING,
    ) -> Completion:
        """Options are taken (and recorded) but change nothing: the echo is the echo."""
        # Whitespace-separated words stand in for tokens, so usage is deterministic.
        prompt = sum(
            len((m["content"] if type(m["content"]) is str else text_of(m["content"])).split())
            for m in messages
        )
        calls = _calls(messages, tooling)
        if calls:
            return Completion(
                content="",
                model=model,
                finish_reason="tool_calls",
                prompt_tokens=prompt,
                completion_tokens=sum(len(c["arguments"].split()) for c in calls),
                options=options.given(),
                tool_calls=calls,
            )
        if messages[-1]["role"] == "tool":
            results = [m for m in reversed(messages) if m["role"] == "tool"]
            said = "\n".join(text_of(m["content"]) for m in reversed(results))
        else:
            said = _describe(messages[-1])
        reply = f"Echo: {said}"
        fmt = tooling.json_format()
        if fmt is not None and fmt.type == "json_schema":
            reply = dumps(minimal_instance(fmt.schema or {"type": "object"}))
        elif fmt is not None:
            reply = dumps({"echo": reply})
        return Completion(
            content=reply,
            model=model,
            prompt_tokens=prompt,
            completion_tokens=len(reply.split()),
            options=options.given(),
        )

    def stream(
        self,
        messages: list[ChatMessage],
        model: str,
        options: Options = NO_OPTIONS,
        *,
        request_id: str | None = None,
        tooling: Tooling = NO_TOOLING,
    ) -> "EchoStream":
        return EchoStream(self.complete(messages, model, options, tooling=tooling))


def _pieces(text: str, count: int = 3) -> list[str]:
    """`text` in at most `count` pieces cut between words (after its whitespace)."""
    words = re.findall(r"\S+\s*|\s+", text)
    pieces = min(count, len(words))
    cuts = [round(n * len(words) / pieces) for n in range(pieces + 1)] if pieces else []
    return ["".join(words[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]


class EchoStream:
    """The echo reply in three pieces cut between words (a call: its first delta, then its
    arguments in three pieces), then the usage."""

    def __init__(self, completion: Completion):
        self.completion = completion
        self.options = completion.options

    def __iter__(self) -> Iterator[StreamEvent]:
        for index, call in enumerate(self.completion.tool_calls):
            first = ToolCallDelta(index=index, id=call["id"], name=call["name"])
            yield StreamEvent(tool_calls=(first,))
            for piece in _pieces(call["arguments"]):
                yield StreamEvent(tool_calls=(ToolCallDelta(index=index, arguments=piece),))
        for piece in _pieces(self.completion.content):
            yield StreamEvent(text=piece)
        yield StreamEvent(
            finish_reason=self.completion.finish_reason,
            prompt_tokens=self.completion.prompt_tokens,
            completion_tokens=self.completion.completion_tokens,
            done=True,
        )

    def close(self) -> None:
        pass
