"""A Chat Completions request as OpenAI defines it
(https://platform.openai.com/docs/api-reference/chat/create), read into what a PolyGenix turn
needs: the messages, the model, the generation options, the tooling (tools, tool choice and
response format: tool_schema.py), whether to stream and to store.

What PolyGenix cannot do is refused with a 400 naming the field (`param`): the deprecated
functions and function_call, logprobs, more than one choice, audio or file parts. A user
message's `image_url` parts are read by images.py.
Fields that change nothing here (frequency_penalty, logit_bias, service_tier, user, metadata...)
are accepted and ignored, as OpenAI-compatible servers commonly do.

Messages are checked as OpenAI checks them: a role among those known, a content that is a string
or a non-empty list of parts, never null or missing (but on an assistant message with tool
calls); an empty string is accepted but for the last message. A tool message answers a call of
an earlier assistant message of the request. More than V1_MAX_MESSAGES of them is a 400.
"""

from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask_smorest import abort

from ..attachments.images import ImageInfo
from ..providers import ChatMessage, Options
from ..providers.base import EFFORTS
from ..providers.messages import ContentPart
from ..providers.tools import NO_TOOLING, Tooling
from . import tool_schema
from .images import image_part

ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
UNSUPPORTED = ("functions", "function_call", "audio", "prediction")
MAX_STOP = 4


@dataclass(frozen=True)
class Request:
    model: str
    messages: list[ChatMessage]
    options: Options
    stream: bool
    include_usage: bool
    store: bool
    # The last message's inline images: their bytes and what they are, stored with it.
    images: tuple[tuple[bytes, ImageInfo], ...] = ()
    tooling: Tooling = NO_TOOLING


def invalid(param: str, message: str):
    abort(400, message=message, errors={"json": {param: [message]}})


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        invalid(name, f"{name} must be a number from {low:g} to {high:g}.")
    return float(value)


def _integer(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        invalid(name, f"{name} must be a whole number from {low} to {high}.")
    return value


def _text(content: Any, index: int) -> str:
    """A message's content: a string, or a non-empty list of text parts (joined)."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list) and not content:
        invalid("messages", f"messages[{index}].content must not be an empty list.")
    elif isinstance(content, list):
        pieces = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                invalid(
                    "messages", f"messages[{index}]: only text parts are supported, not {kind!r}."
                )
            if not isinstance(part.get("text"), str):
                invalid("messages", f"messages[{index}]: a text part needs its text.")
            pieces.append(part["text"])
        text = "".join(pieces)
    else:
        invalid("messages", f"messages[{index}].content must be a string or a list of parts.")
    if "\x00" in text:
        invalid("messages", f"messages[{index}]: content must not contain NUL characters.")
    return text


def _user_content(
    content: Any, index: int
) -> tuple[str | list[ContentPart], list[tuple[bytes, ImageInfo]]]:
    """A user message's content: as _text, or, when it has image_url parts, its parts in
    order (text and images), with the inline images' bytes."""
    if not isinstance(content, list) or not any(
        isinstance(p, dict) and p.get("type") == "image_url" for p in content
    ):
        return _text(content, index), []
    parts: list[ContentPart] = []
    inline: list[tuple[bytes, ImageInfo]] = []
    for n, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "image_url":
            image, data, info = image_part(part, f"messages[{index}].content[{n}]")
            parts.append(image)
            if data is not None:
                inline.append((data, info))
        else:
            parts.append({"type": "text", "text": _text([part], index)})
    most = current_app.config["ATTACHMENTS_PER_MESSAGE"]
    if sum(p["type"] == "image" for p in parts) > most:
        invalid("messages", f"messages[{index}]: at most {most} images per message.")
    return parts, inline


def _message(
    message: Any, index: int, calls: set[str]
) -> tuple[ChatMessage, list[tuple[bytes, ImageInfo]]]:
    """Message `index`, and its inline images; `calls` holds the ids of the tool calls of the
    messages before it."""
    role = message.get("role") if isinstance(message, dict) else None
    if not isinstance(role, str) or role not in ROLES:
        invalid(
            "messages",
            f"messages[{index}].role must be one of system, developer, user, assistant, tool.",
        )
    if message.get("function_call"):
        invalid("messages", f"messages[{index}].function_call is deprecated: use tool_calls.")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None and role != "assistant":
        invalid("messages", f"messages[{index}]: only an assistant message has tool_calls.")
    if message.get("content") is None and tool_calls is None:
        invalid("messages", f"messages[{index}].content is required: a string or a list of parts.")
    content = message.get("content")
    if ROLES[role] == "user":
        parts, inline = _user_content(content, index)
        return {"role": "user", "content": parts}, inline
    read: ChatMessage = {
        "role": ROLES[role],
        "content": "" if content is None else _text(content, index),
    }
    if tool_calls is not None:
        read["tool_calls"] = tool_schema.calls(tool_calls, index, calls)
    elif role == "tool":
        read["tool_call_id"] = tool_schema.answered_call(message, index, calls)
    return read, []


def parse(body: Any) -> Request:
    if not isinstance(body, dict):
        invalid("body", "The body must be a JSON object.")
    for name in UNSUPPORTED:
        if body.get(name):
            invalid(name, f"{name} is not supported by this server.")
    tooling = tool_schema.tooling(body)
    if body.get("logprobs"):
        invalid("logprobs", "logprobs are not supported by this server.")
    if body.get("n") not in (None, 1):
        invalid("n", "Only n=1 is supported.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200 or "\x00" in model:
        invalid("model", "model must be a model name (1 to 200 characters).")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        invalid("messages", "messages must be a non-empty list.")
    most = current_app.config["V1_MAX_MESSAGES"]
    if len(messages) > most:
        invalid("messages", f"messages must hold at most {most} messages, not {len(messages)}.")
    read: list[ChatMessage] = []
    calls: set[str] = set()
    for index, message in enumerate(messages):
        # The last message's inline images are stored with it; the earlier ones' are not.
        parsed, inline = _message(message, index, calls)
        read.append(parsed)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list)
        or not 1 <= len(stop) <= MAX_STOP
        or not all(isinstance(s, str) and s and "\x00" not in s for s in stop)
    ):
        invalid("stop", f"stop must be a string or a list of 1 to {MAX_STOP} strings.")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        invalid("reasoning_effort", f"reasoning_effort must be one of {', '.join(EFFORTS)}.")
    for name in ("stream", "store"):
        if name in body and body[name] is not None and not isinstance(body[name], bool):
            invalid(name, f"{name} must be true or false.")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        invalid("stream_options", "stream_options must be an object.")
    max_tokens = _integer(body, "max_completion_tokens", 1, 2**31 - 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 2**31 - 1)
    return Request(
        model=model,
        messages=read,
        options=Options(
            temperature=_number(body, "temperature", 0, 2),
            top_p=_number(body, "top_p", 0, 1),
            max_tokens=max_tokens,
            stop=tuple(stop) if stop else None,
            reasoning_effort=effort,
            seed=_integer(body, "seed", -(2**63), 2**63 - 1),
        ),
        stream=bool(body.get("stream")),
        include_usage=bool(stream_options.get("include_usage")),
        store=body.get("store") is not False,
        images=tuple(inline),
        tooling=tooling,
    )
