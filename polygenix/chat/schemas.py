import marshmallow as ma
from flask import current_app
from marshmallow import fields, validate

from ..api import NO_NUL, Text, no_nul
from ..attachments.store import listed
from ..models import MAX_ID
from ..providers import Options
from ..providers.base import EFFORTS

MAX_STOP_SEQUENCES = 4


class StrictBoolean(fields.Boolean):
    """Only JSON true or false (marshmallow's Boolean also takes 0, 1, "yes"...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ma.ValidationError("Not a valid boolean.")
        return value


class StrictNumber(fields.Float):
    """Only a JSON number (marshmallow's Float also takes "0.5" and true)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ma.ValidationError("Not a valid number.")
        return super()._deserialize(value, attr, data, **kwargs)


class GenerationOptionsSchema(ma.Schema):
    """What a request may ask of the model besides its words; each left out by default."""

    temperature = StrictNumber(
        validate=validate.Range(min=0, max=2),
        metadata={"description": "Sampling temperature, 0 to 2"},
    )
    top_p = StrictNumber(
        validate=validate.Range(min=0, max=1),
        metadata={"description": "Nucleus sampling, 0 to 1"},
    )
    max_tokens = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "The longest reply, in tokens: 1 to the model's output cap"},
    )
    stop = fields.List(
        Text(max_length=200),
        validate=validate.Length(min=1, max=MAX_STOP_SEQUENCES),
        metadata={"description": f"Up to {MAX_STOP_SEQUENCES} sequences that end the reply"},
    )
    reasoning_effort = fields.String(
        validate=validate.OneOf(EFFORTS),
        metadata={"description": "How hard a reasoning model thinks: low, medium or high"},
    )


def options_from(data: dict) -> Options:
    """The generation options of a loaded request."""
    return Options(
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        max_tokens=data.get("max_tokens"),
        stop=tuple(data["stop"]) if data.get("stop") else None,
        reasoning_effort=data.get("reasoning_effort"),
    )


def validate_content(value: str) -> None:
    maximum = current_app.config["MAX_MESSAGE_CHARS"]
    if len(value) > maximum:
        raise ma.ValidationError(f"Message content must be at most {maximum} characters.")


def _model_field(description: str, **kwargs) -> fields.String:
    return fields.String(
        validate=[validate.Length(min=1, max=200), no_nul],
        metadata={"description": description, "example": "echo", "pattern": NO_NUL},
        **kwargs,
    )


def _attachment_ids(description: str, **kwargs) -> fields.List:
    return fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
        # Each id once (a 422 otherwise); at most ATTACHMENTS_PER_MESSAGE are taken.
        validate=validate.Length(max=1000),
        metadata={"description": description, "uniqueItems": True},
        **kwargs,
    )


class StreamOptionSchema(GenerationOptionsSchema):
    stream = StrictBoolean(
        load_default=False,
        metadata={
            "description": "Answer with Server-Sent Events (also: Accept: text/event-stream)"
        },
    )


class MessageCreateSchema(StreamOptionSchema):
    content = Text(required=True, validate=validate_content)
    model = _model_field(
        "`provider` or `provider/model-id`, e.g. `echo`; may be left out for a session "
        "with a default model"
    )
    session_id = fields.Integer(
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={
            "description": "Your session's number: null or absent starts a new session; "
            "a number you have no session with starts one with that number."
        },
    )
    attachment_ids = _attachment_ids(
        "Your attachments (POST /api/ai_chat/attachments) that go with the message, in order: "
        "at most ATTACHMENTS_PER_MESSAGE",
        load_default=(),
    )
    # The original web client sends it; it has no meaning here.
    chat_id = fields.Raw(allow_none=True, load_only=True, metadata={"description": "Ignored"})


class RegenerateSchema(StreamOptionSchema):
    model = _model_field("Default: the session's model, else the model of the reply it replaces")
    attachment_ids = _attachment_ids(
        "The question's images from now on, in order, once the new reply is stored (absent: it "
        "keeps its own; [] none)"
    )


class EditSchema(RegenerateSchema):
    content = Text(required=True, validate=validate_content)


class MessageAttachmentSchema(ma.Schema):
    id = fields.Integer()
    media_type = fields.String()
    bytes = fields.Integer()
    width = fields.Integer()
    height = fields.Integer()


class MessageAttachments(fields.List):
    """A message's attachments: those history read for all its messages at once, else (a
    message read alone, as a turn's reply) one query."""

    def get_value(self, obj, attr, accessor=None, default=ma.missing):
        shown = getattr(obj, "shown_attachments", None)
        if shown is None:  # replies have none
            shown = listed([obj.id]).get(obj.id, []) if obj.id and not obj.is_bot else []
        return shown


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
    reasoning = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "A reply's reasoning, apart from its answer (null when none)"},
    )
    options = fields.Dict(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The generation options sent with a reply's request"},
    )
    superseded = fields.Boolean(
        dump_only=True,
        metadata={"description": "Replaced by a regenerated reply or an edited question"},
    )
    attachments = MessageAttachments(
        fields.Nested(lambda: MessageAttachmentSchema()),
        dump_only=True,
        metadata={"description": "The images that went with the message (your own messages')"},
    )
    tool_calls = fields.Method(
        "_tool_calls",
        dump_only=True,
        metadata={
            "type": "array",
            "items": {"type": "object"},
            "description": "A reply that called tools (include_tools): its calls, as OpenAI "
            'shapes them ({"id", "type": "function", "function": {"name", "arguments"}})',
        },
    )
    tool_call_id = fields.String(
        dump_only=True,
        metadata={"description": "A tool result (include_tools): the call it answers"},
    )

    def _tool_calls(self, message):
        return [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in message.tool_calls or ()
        ]

    @ma.post_dump
    def _only_tool_messages_have_tool_fields(self, data, **kwargs):
        # The original web client's messages keep exactly the fields they always had.
        if not data.get("tool_calls"):
            data.pop("tool_calls", None)
        if data.get("tool_call_id") is None:
            data.pop("tool_call_id", None)
        return data

    def _usage(self, message):
        if not message.is_bot:
            return None
        return {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "reasoning_tokens": message.reasoning_tokens,
            "cached_tokens": message.cached_tokens,
            "cost_usd": message.cost_usd,
        }


class SessionSchema(ma.Schema):
    chat_id = fields.Integer(attribute="number", dump_only=True)
    title = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(
        dump_only=True, metadata={"description": "The time of its latest message"}
    )
    system_prompt = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The session's instructions (null: the server's)"},
    )
    model = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The model used when a request names none"},
    )


class ChatSessionResponseSchema(SessionSchema):
    messages = fields.List(fields.Nested(MessageResponseSchema), dump_only=True)


class SessionSummarySchema(SessionSchema):
    message_count = fields.Integer(
        dump_only=True, metadata={"description": "Its messages, superseded ones not counted"}
    )


SYSTEM_PROMPT_MAX_CHARS = 8000


class SessionUpdateSchema(ma.Schema):
    title = Text(strip=True, max_length=200)
    system_prompt = Text(
        allow_none=True,
        max_length=SYSTEM_PROMPT_MAX_CHARS,
        metadata={"description": "Replaces SYSTEM_PROMPT for this session; null clears it"},
    )
    model = _model_field("The session's default model; null clears it", allow_none=True)

    @ma.validates_schema
    def _something(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Send title, system_prompt or model.")


class StrictQueryBoolean(fields.Boolean):
    """Only `true` or `false` in a query string."""

    truthy = {"true"}
    falsy = {"false"}


class ListingArgsSchema(ma.Schema):
    order = fields.String(
        load_default="updated",
        validate=validate.OneOf(["updated", "created"]),
        metadata={"description": "`updated`: latest activity first; `created`: newest first"},
    )


def _superseded_arg() -> StrictQueryBoolean:
    return StrictQueryBoolean(
        load_default=False,
        metadata={"description": "Also the messages replaced by a regenerate or an edit"},
    )


def _tools_arg() -> StrictQueryBoolean:
    return StrictQueryBoolean(
        load_default=False,
        metadata={
            "description": "Also the replies that call tools (with `tool_calls`) and the tool "
            "results (with `tool_call_id`) of /v1 tool loops"
        },
    )


class HistoryArgsSchema(ListingArgsSchema):
    include_superseded = _superseded_arg()
    include_tools = _tools_arg()


class SessionArgsSchema(ma.Schema):
    include_superseded = _superseded_arg()
    include_tools = _tools_arg()


class ExportArgsSchema(SessionArgsSchema):
    format = fields.String(load_default="markdown", validate=validate.OneOf(["markdown", "json"]))


class HomeSchema(ma.Schema):
    data = fields.Dict(keys=fields.String(), values=fields.String())


class ModelSchema(ma.Schema):
    id = fields.String(metadata={"description": "Send this (or just the provider) as `model`"})
    provider = fields.String()
    model = fields.String(allow_none=True)
    default = fields.Boolean(metadata={"description": "The provider's default model"})
    available = fields.Boolean(metadata={"description": "Usable now (configured and reachable)"})
    unavailable_reason = fields.String(
        allow_none=True, metadata={"description": "Why it is not available (null when it is)"}
    )


class ExportAllArgsSchema(SessionArgsSchema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(["json", "markdown"]),
        metadata={"description": "json: one JSON document; markdown: a zip of transcripts"},
    )


class SearchArgsSchema(ma.Schema):
    q = Text(
        required=True,
        max_length=500,
        metadata={
            "description": 'Words to find: `"a phrase"`, `this or that`, `-excluded`; '
            "other words must all be present"
        },
    )


class SearchResultSchema(ma.Schema):
    chat_id = fields.Integer(dump_only=True)
    title = fields.String(dump_only=True)
    message_id = fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "Null for a title match"}
    )
    is_bot = fields.Boolean(dump_only=True, allow_none=True)
    snippet = fields.String(
        dump_only=True,
        metadata={"description": "HTML: escaped text, the matched words in <mark></mark>"},
    )
    timestamp = fields.DateTime(
        dump_only=True, metadata={"description": "The message's time, or the session's creation"}
    )
