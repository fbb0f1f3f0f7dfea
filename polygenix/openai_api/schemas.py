"""A Chat Completions request as OpenAI defines it
(https://platform.openai.com/docs/api-reference/chat/create), validated by a marshmallow schema
(errors in OpenAI's shape: validation.py) and read into what a PolyGenix turn needs: the
messages, the model, the generation options, the tooling (tools, tool choice and response
format: tool_schema.py), whether to stream and to store.

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

from dataclasses import dataclass, field
from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import fields, post_load, validate, validates_schema

from ..attachments.images import ImageInfo
from ..providers import ChatMessage, Options
from ..providers.base import EFFORTS
from ..providers.messages import ContentPart
from ..providers.tools import NO_TOOLING, Tooling
from . import tool_schema
from .images import Image, ImageUrlPartSchema
from .validation import (
    Flag,
    Grouped,
    ModelName,
    Number,
    OneOf,
    Refused,
    Schema,
    Text,
    TextOrParts,
    Whole,
    invalid,
    load,
)

__all__ = ["Request", "invalid", "parse"]

ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
MAX_STOP = 4
CONTENT_REQUIRED = "is required: a string or a list of parts."


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


@dataclass(frozen=True)
class Read:
    """A message as read, and its inline images."""

    message: ChatMessage
    inline: list[tuple[bytes, ImageInfo]] = field(default_factory=list)


class TextPartSchema(Schema):
    text = Text(required=True, error_messages={"required": "is required: a string."})

    @post_load
    def _text(self, data, **kwargs) -> str:
        return data["text"]


def content(part: fields.Field, **kwargs) -> TextOrParts:
    said = {"required": CONTENT_REQUIRED, "null": CONTENT_REQUIRED}
    return TextOrParts(part, error_messages=said, **kwargs)


TEXT_PART = OneOf(
    "type", {"text": TextPartSchema()}, ": only text parts are supported, not {kind!r}."
)
USER_PART = OneOf(
    "type",
    {"text": TextPartSchema(), "image_url": ImageUrlPartSchema()},
    ": only text and image_url parts are supported, not {kind!r}.",
)


class MessageSchema(Schema):
    """A system, developer or tool message."""

    role = fields.String()
    content = content(TEXT_PART, required=True)
    function_call = Refused("is deprecated: use tool_calls.")
    tool_calls = Refused(": only an assistant message has tool_calls.")
    tool_call_id = Text(allow_none=True)  # checked against the calls (tool_schema.check)

    @post_load
    def _read(self, data, **kwargs) -> Read:
        message: ChatMessage = {"role": ROLES[data["role"]], "content": "".join(data["content"])}
        if data["role"] == "tool":
            message["tool_call_id"] = data.get("tool_call_id")
        return Read(message)


class AssistantMessageSchema(MessageSchema):
    content = content(TEXT_PART, allow_none=True)
    tool_calls = tool_schema.TOOL_CALLS

    @validates_schema(pass_original=True)
    def _content_or_calls(self, data, original, **kwargs):
        # From the message as sent: an error in either field comes first.
        if original.get("content") is None and original.get("tool_calls") is None:
            raise ma.ValidationError(CONTENT_REQUIRED, field_name="content")

    @post_load
    def _read(self, data, **kwargs) -> Read:
        message: ChatMessage = {"role": "assistant", "content": "".join(data.get("content") or ())}
        if data.get("tool_calls") is not None:
            message["tool_calls"] = data["tool_calls"]
        return Read(message)


class UserContent(TextOrParts):
    """A user's content: text and at most ATTACHMENTS_PER_MESSAGE images."""

    def _deserialize(self, value, attr, data, **kwargs) -> list:
        parts = super()._deserialize(value, attr, data, **kwargs)
        if isinstance(value, str):
            return parts
        most = current_app.config["ATTACHMENTS_PER_MESSAGE"]
        if len(parts) > most and sum(isinstance(part, Image) for part in parts) > most:
            raise ma.ValidationError(f": at most {most} images per message.")
        return parts


class UserMessageSchema(MessageSchema):
    content = UserContent(
        USER_PART,
        required=True,
        error_messages={"required": CONTENT_REQUIRED, "null": CONTENT_REQUIRED},
    )

    @post_load
    def _read(self, data, **kwargs) -> Read:
        parts = data["content"]
        if all(isinstance(part, str) for part in parts):
            return Read({"role": "user", "content": "".join(parts)})
        read: list[ContentPart] = [
            part.part if isinstance(part, Image) else {"type": "text", "text": part}
            for part in parts
        ]
        inline = [(p.data, p.info) for p in parts if isinstance(p, Image) and p.data is not None]
        return Read({"role": "user", "content": read}, inline)


OTHER = MessageSchema()
MESSAGE = OneOf(
    "role",
    {"user": UserMessageSchema(), "assistant": AssistantMessageSchema()}
    | {"system": OTHER, "developer": OTHER, "tool": OTHER},
    ".role must be one of system, developer, user, assistant, tool.",
)


class Stop(fields.Field):
    """A string, or a list of 1 to MAX_STOP strings; as a tuple."""

    def __init__(self, **kwargs):
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[str, ...]:
        stops = [value] if isinstance(value, str) else value
        if (
            not isinstance(stops, list)
            or not 1 <= len(stops) <= MAX_STOP
            or not all(isinstance(s, str) and s and "\x00" not in s for s in stops)
        ):
            raise ma.ValidationError(f"must be a string or a list of 1 to {MAX_STOP} strings.")
        return tuple(stops)


class StreamOptionsSchema(Schema):
    include_usage = Flag()


class ChatCompletionsSchema(Schema):
    error_messages = {"type": "The body must be a JSON object."}

    functions = Refused("is not supported by this server.")
    function_call = Refused("is not supported by this server.")
    audio = Refused("is not supported by this server.")
    prediction = Refused("is not supported by this server.")
    tools = tool_schema.TOOLS
    tool_choice = tool_schema.ToolChoice()
    parallel_tool_calls = Flag()
    response_format = tool_schema.RESPONSE_FORMAT
    logprobs = Refused("are not supported by this server.")
    n = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Equal(1, error="Only n=1 is supported."),
        error_messages={"invalid": "Only n=1 is supported."},
    )
    model = ModelName(required=True)
    messages = Grouped(
        MESSAGE,
        "V1_MAX_MESSAGES",
        "messages",
        empty="must be a non-empty list.",
        required=True,
        error_messages={
            "invalid": "must be a non-empty list.",
            "required": "must be a non-empty list.",
            "null": "must be a non-empty list.",
        },
    )
    stop = Stop()
    reasoning_effort = fields.String(
        allow_none=True,
        validate=validate.OneOf(EFFORTS, error=f"must be one of {', '.join(EFFORTS)}."),
    )
    stream = Flag()
    store = Flag()
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True)
    max_completion_tokens = Whole(1, 2**31 - 1)
    max_tokens = Whole(1, 2**31 - 1)
    temperature = Number(0, 2)
    top_p = Number(0, 1)
    seed = Whole(-(2**63), 2**63 - 1)

    @validates_schema
    def _as_a_whole(self, data, **kwargs):
        tool_schema.check(data, [read.message for read in data["messages"]])


SCHEMA = ChatCompletionsSchema()


def parse(body: Any) -> Request:
    """The request in `body` (parsed JSON); a 400 in OpenAI's shape if it is not one."""
    data = load(SCHEMA, body)
    read: list[Read] = data["messages"]
    max_tokens = data.get("max_completion_tokens")
    return Request(
        model=data["model"],
        messages=[r.message for r in read],
        options=Options(
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            max_tokens=max_tokens if max_tokens is not None else data.get("max_tokens"),
            stop=data.get("stop"),
            reasoning_effort=data.get("reasoning_effort"),
            seed=data.get("seed"),
        ),
        stream=bool(data.get("stream")),
        include_usage=bool((data.get("stream_options") or {}).get("include_usage")),
        store=data.get("store") is not False,
        # The last message's inline images are stored with it; the earlier ones' are not.
        images=tuple(read[-1].inline),
        tooling=tool_schema.tooling(data),
    )
