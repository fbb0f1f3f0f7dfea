import marshmallow as ma
from flask import current_app
from marshmallow import fields, validate

from ..api import NO_NUL, Text, no_nul

MAX_NUMBER = 2_147_483_647


class StrictBoolean(fields.Boolean):
    """Only JSON true or false (marshmallow's Boolean also takes 0, 1, "yes"...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ma.ValidationError("Not a valid boolean.")
        return value


def validate_content(value: str) -> None:
    maximum = current_app.config["MAX_MESSAGE_CHARS"]
    if len(value) > maximum:
        raise ma.ValidationError(f"Message content must be at most {maximum} characters.")


class MessageCreateSchema(ma.Schema):
    content = Text(required=True, validate=validate_content)
    model = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=200), no_nul],
        metadata={
            "description": "`provider` or `provider/model-id`, e.g. `echo`",
            "example": "echo",
            "pattern": NO_NUL,
        },
    )
    session_id = fields.Integer(
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_NUMBER),
        metadata={
            "description": "Your session's number: null or absent starts a new session; "
            "a number you have no session with starts one with that number."
        },
    )
    # The original web client sends it; it has no meaning here.
    chat_id = fields.Raw(allow_none=True, load_only=True, metadata={"description": "Ignored"})
    stream = StrictBoolean(
        load_default=False,
        metadata={
            "description": "Answer with Server-Sent Events (also: Accept: text/event-stream)"
        },
    )


class MessageResponseSchema(ma.Schema):
    id = fields.Integer(dump_only=True)
    content = fields.String(dump_only=True)
    is_bot = fields.Boolean(dump_only=True)
    session_id = fields.Function(
        lambda message: message.session.number,
        dump_only=True,
        metadata={"type": "integer", "description": "The session's number (its chat_id)"},
    )
    timestamp = fields.DateTime(attribute="created_at", dump_only=True)
    model = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "`provider/model` of a reply"}
    )
    usage = fields.Method("_usage", dump_only=True, allow_none=True)
    finish_reason = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Why the reply ended: stop, length, content_filter..."},
    )
    failed = fields.Function(
        lambda message: message.error is not None,
        dump_only=True,
        metadata={"type": "boolean", "description": "The model call for this message failed"},
    )
    error = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "Why it failed or was cut short"}
    )
    incomplete = fields.Boolean(
        dump_only=True,
        metadata={"description": "A streamed reply cut short (provider failure, disconnect)"},
    )

    def _usage(self, message):
        if not message.is_bot:
            return None
        return {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
        }


class ChatSessionResponseSchema(ma.Schema):
    chat_id = fields.Integer(attribute="number", dump_only=True)
    title = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    messages = fields.List(fields.Nested(MessageResponseSchema), dump_only=True)


class SessionSummarySchema(ma.Schema):
    chat_id = fields.Integer(attribute="number", dump_only=True)
    title = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    message_count = fields.Integer(dump_only=True)


class SessionUpdateSchema(ma.Schema):
    title = Text(required=True, strip=True, max_length=200)


class ExportArgsSchema(ma.Schema):
    format = fields.String(load_default="markdown", validate=validate.OneOf(["markdown", "json"]))


class HomeSchema(ma.Schema):
    data = fields.Dict(keys=fields.String(), values=fields.String())


class ModelSchema(ma.Schema):
    id = fields.String(metadata={"description": "Send this (or just the provider) as `model`"})
    provider = fields.String()
    model = fields.String(allow_none=True)
    default = fields.Boolean(metadata={"description": "The provider's default model"})
    available = fields.Boolean(metadata={"description": "Usable now (configured)"})
