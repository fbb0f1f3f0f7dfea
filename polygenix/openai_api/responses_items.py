"""The input items of a Responses request (https://platform.openai.com/docs/api-reference/
responses/create#responses-create-input), read by a schema: messages (a user's with text and
input_image parts, the others' text), `function_call` and `function_call_output` items
(responses_tools.py), `item_reference`s (resolved once the body is read: responses_schema.py)
and `reasoning` items a client sends back (they hold nothing to resend). Any other item or part
is a 400 on `input`.
"""

import marshmallow as ma
from flask import current_app
from marshmallow import fields, post_load

from . import responses_tools as function_tools
from .responses_images import InputImageSchema, Picture
from .validation import Grouped, OneOf, Schema, Text, TextOrParts


class TextPartSchema(Schema):
    text = Text(required=True, error_messages={"required": "is required: a string."})

    @post_load
    def _text(self, data, **kwargs) -> str:
        return data["text"]


TEXT = TextPartSchema()
TEXT_PARTS = {"input_text": TEXT, "output_text": TEXT, "text": TEXT}
NOT_TEXT = ": parts of type {kind!r} are not supported here: send input_text parts."
CONTENT = {
    "invalid": "must be a string or a non-empty list of parts.",
    "empty": "must be a string or a non-empty list of parts.",
    "required": "must be a string or a non-empty list of parts.",
    "null": "must be a string or a non-empty list of parts.",
}


class MessageItemSchema(Schema):
    """A message input item of a system, developer or assistant: its text parts, as kept."""

    role = fields.String()
    content = TextOrParts(
        OneOf("type", TEXT_PARTS, NOT_TEXT), required=True, error_messages=CONTENT
    )

    @post_load
    def _item(self, data, **kwargs) -> dict:
        assistant = data["role"] == "assistant"
        kind = "output_text" if assistant else "input_text"
        extra = {"annotations": []} if assistant else {}
        parts = [{"type": kind, "text": text} | extra for text in data["content"]]
        return {"type": "message", "role": data["role"], "content": parts}


class UserContent(TextOrParts):
    """A user's content: text and at most ATTACHMENTS_PER_MESSAGE images."""

    def _deserialize(self, value, attr, data, **kwargs) -> list:
        parts = super()._deserialize(value, attr, data, **kwargs)
        if isinstance(value, str):
            return parts
        most = current_app.config["ATTACHMENTS_PER_MESSAGE"]
        if len(parts) > most and sum(isinstance(part, Picture) for part in parts) > most:
            raise ma.ValidationError(f": at most {most} images per message.")
        return parts


class UserItemSchema(MessageItemSchema):
    """A user's message input item: text and input_image parts."""

    content = UserContent(
        OneOf(
            "type",
            TEXT_PARTS | {"input_image": InputImageSchema()},
            ": parts of type {kind!r} are not supported here: send input_text or input_image"
            " parts.",
        ),
        required=True,
        error_messages=CONTENT,
    )

    @post_load
    def _item(self, data, **kwargs) -> dict:
        parts = [
            part.kept if isinstance(part, Picture) else {"type": "input_text", "text": part}
            for part in data["content"]
        ]
        pictures = [part for part in data["content"] if isinstance(part, Picture)]
        return {"type": "message", "role": "user", "content": parts, "pictures": pictures}


class ReferenceSchema(Schema):
    id = Text(required=True)

    @post_load
    def _item(self, data, **kwargs) -> dict:
        return {"type": "item_reference", "id": data["id"]}


class ReasoningItemSchema(Schema):
    @post_load
    def _item(self, data, **kwargs) -> dict:
        return {"type": "reasoning"}  # a client sends it back; it holds nothing to resend


OTHER = MessageItemSchema()
ITEM = OneOf(
    "type",
    {
        "message": OneOf(
            "role",
            {"user": UserItemSchema(), "system": OTHER, "developer": OTHER, "assistant": OTHER},
            ".role must be one of user, system, developer, assistant.",
        ),
        "item_reference": ReferenceSchema(),
        "reasoning": ReasoningItemSchema(),
        "function_call": function_tools.CallItemSchema(),
        "function_call_output": function_tools.OutputItemSchema(),
    },
    ": items of type {kind!r} are not supported by this server.",
    default="message",
    not_object="must be an object (an input item).",
)


class Input(fields.Field):
    """A string (the user's message), or a list of 1 to V1_MAX_MESSAGES input items."""

    ITEMS = Grouped(
        ITEM,
        "V1_MAX_MESSAGES",
        "items",
        empty="must be a string or a non-empty list of input items.",
        error_messages={"invalid": "must be a string or a non-empty list of input items."},
    )

    def _deserialize(self, value, attr, data, **kwargs) -> str | list[dict]:
        if isinstance(value, str):
            if "\x00" in value:
                raise ma.ValidationError("must not contain NUL characters.")
            return value
        return self.ITEMS.deserialize(value)
