"""A Responses API request as OpenAI defines it
(https://platform.openai.com/docs/api-reference/responses/create), read into what a PolyGenix
turn needs: the new input (as items, kept, and as chat messages), the instructions, the
response it continues, the generation options, the answer's format, whether to stream and to
store.

What PolyGenix cannot do is a 400 naming the field (`param`): built-in tools (web_search,
file_search...), `background: true`, `conversation`, reusable `prompt`s, input files and
audio, image `file_id`s (function tools: responses_tools.py; images: responses_images.py).
A field OpenAI does not define is a 400 too, as OpenAI answers ("Unknown parameter"). Fields
that change nothing here (`user`, `service_tier`, `prompt_cache_key`...) are accepted and
ignored; `include` must list OpenAI's includables and `truncation` be "auto" or "disabled"
(docs/api.md says what each does here).

The body is validated by a marshmallow schema (errors in OpenAI's shape: validation.py); what
needs the caller's stored items (an `item_reference`) or the whole conversation (its last item,
its size) is checked once it is read.
"""

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import fields, post_load, validate, validates_schema

from ..chat.tool_loop import chars
from ..providers import ChatMessage, Options, ResponseFormat, Tooling
from ..providers.base import EFFORTS
from ..providers.messages import ContentPart, ImagePart, images_of, text_of
from . import responses_tools as function_tools
from .responses_images import Inline
from .responses_items import Input
from .validation import (
    Flag,
    JsonSchema,
    ModelName,
    Number,
    OneOf,
    Path,
    Refused,
    Schema,
    Text,
    Whole,
    field_path,
    invalid,
    load,
)

ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
RESPONSE_ID = re.compile(r"resp_[0-9a-f]{48}")
ITEM_ID = re.compile(r"[a-z]{1,8}_([0-9a-f]{48})[0-9a-f]{4}")
METADATA_KEYS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
# What OpenAI's `include` may list (ResponseIncludable); none adds anything here (docs/api.md).
INCLUDABLE = (
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "web_search_call.action.sources",
    "web_search_call.results",
)
TRUNCATIONS = ("auto", "disabled")


class Ids:
    """The ids of one response and its items: `resp_` and 48 random hex digits, and for each
    item its prefix, the same digits and a counter, so that an item's id names its response
    (an `item_reference` is found from it) and none can be guessed."""

    def __init__(self):
        self.digits = secrets.token_hex(24)
        self.count = 0

    @property
    def response(self) -> str:
        return f"resp_{self.digits}"

    def __call__(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.digits}{self.count:04x}"


@dataclass(frozen=True)
class Request:
    model: str
    items: list[dict]  # the input items, as OpenAI lists them (input_items), each with an id
    messages: list[ChatMessage]  # the same, as the provider is sent them
    instructions: str | None
    previous_id: str | None
    store: bool
    stream: bool
    options: Options
    tooling: Tooling
    ids: Ids  # the response's and its items' ids
    echo: dict = field(default_factory=dict)  # request fields the response object repeats
    images: tuple[Inline, ...] = ()  # the last message's inline images, stored with it


def response_of(item: str) -> str | None:
    """The id of the response an item id names, if it is one of PolyGenix's."""
    found = ITEM_ID.fullmatch(item) if isinstance(item, str) else None
    return f"resp_{found[1]}" if found else None


# A new message's images by item id: as a provider is sent them, and its inline images' bytes.
Pictures = dict[str, tuple[list[ImagePart], list[Inline]]]
Resolve = Callable[[str], dict | None]  # an item_reference's id: the item it names, if any


class JsonSchemaFormatSchema(Schema):
    name = function_tools.name(required=True)
    schema = JsonSchema(
        required=True,
        error_messages=dict.fromkeys(("required", "null"), "must be a JSON Schema object."),
    )
    strict = Flag()
    description = Text(allow_none=True)

    @post_load
    def _format(self, data, **kwargs) -> ResponseFormat:
        return ResponseFormat(
            "json_schema", data["name"], data["schema"], data.get("strict"), data.get("description")
        )


class PlainFormatSchema(Schema):
    type = fields.String()

    @post_load
    def _format(self, data, **kwargs) -> ResponseFormat:
        return ResponseFormat(data["type"])


class TextSchema(Schema):
    error_messages = {"type": "must be an object."}

    format = OneOf(
        "type",
        {
            "text": PlainFormatSchema(),
            "json_object": PlainFormatSchema(),
            "json_schema": JsonSchemaFormatSchema(),
        },
        ".type must be text, json_object or json_schema.",
        allow_none=True,
    )


class ReasoningSchema(Schema):
    error_messages = {"type": "must be an object."}

    effort = fields.String(
        allow_none=True,
        validate=validate.OneOf(EFFORTS, error=f"must be one of {', '.join(EFFORTS)}."),
    )


METADATA_RULE = (
    f"must be an object of at most {METADATA_KEYS} pairs: keys of at most {METADATA_KEY_CHARS}"
    f" characters, values strings of at most {METADATA_VALUE_CHARS}."
)


class Metadata(fields.Dict):
    """OpenAI's metadata: a few short strings by short names."""

    default_error_messages = {"invalid": METADATA_RULE}

    def __init__(self, **kwargs):
        super().__init__(
            keys=Text(validate=validate.Length(max=METADATA_KEY_CHARS)),
            values=Text(validate=validate.Length(max=METADATA_VALUE_CHARS)),
            validate=validate.Length(max=METADATA_KEYS, error=METADATA_RULE),
            allow_none=True,
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs) -> dict:
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ma.ValidationError:  # one rule for the whole object, as OpenAI states it
            raise ma.ValidationError(METADATA_RULE) from None


class ResponsesRequestSchema(Schema):
    class Meta:
        unknown = ma.RAISE  # as OpenAI: "Unknown parameter"

    error_messages = {"type": "The body must be a JSON object."}

    background = Flag(
        validate=validate.Equal(False, error="responses are not supported by this server.")
    )
    conversation = Refused("objects are not supported by this server.", any_value=True)
    prompt = Refused(": reusable prompts are not supported by this server.", any_value=True)
    top_logprobs = Refused(": logprobs are not supported by this server.")
    stream = Flag()
    store = Flag()
    parallel_tool_calls = Flag()
    model = ModelName(required=True)
    instructions = Text(allow_none=True)
    previous_response_id = Text(allow_none=True)
    tools = function_tools.TOOLS
    tool_choice = function_tools.ToolChoiceField()
    text = fields.Nested(TextSchema, allow_none=True)
    reasoning = fields.Nested(ReasoningSchema, allow_none=True)
    input = Input(
        required=True,
        error_messages=dict.fromkeys(
            ("required", "null"), "must be a string or a non-empty list of input items."
        ),
    )
    max_output_tokens = Whole(1)
    user = Text(allow_none=True)
    temperature = Number(0, 2)
    top_p = Number(0, 1)
    metadata = Metadata()
    include = fields.List(
        fields.String(
            validate=validate.OneOf(INCLUDABLE, error=f"must be one of {', '.join(INCLUDABLE)}.")
        ),
        allow_none=True,
    )
    truncation = fields.String(
        allow_none=True,
        validate=validate.OneOf(TRUNCATIONS, error='must be "auto" or "disabled".'),
    )
    # Accepted, and change nothing here.
    service_tier = fields.Raw(allow_none=True)
    prompt_cache_key = fields.Raw(allow_none=True)
    prompt_cache_retention = fields.Raw(allow_none=True)
    safety_identifier = fields.Raw(allow_none=True)
    stream_options = fields.Raw(allow_none=True)
    max_tool_calls = fields.Raw(allow_none=True)

    @validates_schema
    def _tools(self, data, **kwargs):
        function_tools.check(data.get("tools") or [], data.get("tool_choice"))


SCHEMA = ResponsesRequestSchema()


def _param(path: Path) -> str:
    """The field an error is about: text.format.name, reasoning.effort, else the top one."""
    return field_path(path) if path[0] in ("text", "reasoning") else str(path[0])


def _items(loaded: str | list[dict], new_id: Ids, resolve: Resolve, pictures: Pictures) -> list:
    """The input as kept items, each with an id; an item_reference is the caller's stored item
    it names (a 400 if it names none), a reasoning item nothing."""
    if isinstance(loaded, str):
        item = {"id": new_id("msg"), "type": "message", "role": "user", "status": "completed"}
        return [item | {"content": [{"type": "input_text", "text": loaded}]}]
    items = []
    for n, item in enumerate(loaded):
        kind = item["type"]
        if kind == "item_reference":
            found = resolve(item["id"])
            if found is None:
                invalid("input", f"input[{n}]: Item with id {item['id']!r} not found.")
            if found["type"] != "reasoning":
                items.append(found)
        elif kind in ("function_call", "function_call_output"):
            made = new_id("fc" if kind == "function_call" else "fco")
            items.append(item | {"id": item["id"] if item["id"] is not None else made})
        elif kind == "message":
            item_id = new_id("msg")
            shown = item.pop("pictures", None)
            if shown:
                images = [p.image for p in shown]
                pictures[item_id] = (images, [p.inline for p in shown if p.inline is not None])
            items.append({"id": item_id} | item | {"status": "completed"})
    return items


def messages_of(items: list[dict], pictures: Pictures | None = None) -> list[ChatMessage]:
    """Kept input items as the chat messages a provider is sent: a new message's images from
    `pictures` (a stored one's are its question's attachments: responses_store.py)."""
    messages: list[ChatMessage] = []
    for item in items:
        images = (pictures or {}).get(item.get("id"), ([], []))[0]
        if item["type"] == "message" and images:
            found = iter(images)
            content: list[ContentPart] = [
                next(found) if p["type"] == "input_image" else {"type": "text", "text": p["text"]}
                for p in item["content"]
            ]
            messages.append({"role": ROLES[item["role"]], "content": content})
        elif item["type"] == "message":
            text = "".join(p.get("text", "") for p in item["content"])
            messages.append({"role": ROLES[item["role"]], "content": text})
        elif item["type"] == "function_call":
            function_tools.add_call(messages, item)
        elif item["type"] == "function_call_output":
            messages.append(function_tools.result_message(item))
    return messages


def _sizes(messages: list[ChatMessage], instructions: str | None) -> None:
    """What the turn would refuse, refused here naming `input` (the client chose it: it is
    never trimmed). An image counts as IMAGE_CHARS, as in every turn's checks."""
    config = current_app.config
    last = text_of(messages[-1]["content"])
    blank = not last.strip() and not images_of(messages[-1]["content"])
    if messages[-1]["role"] == "user" and blank:
        invalid("input", "The last input message must not be blank.")
    if len(last) > config["MAX_MESSAGE_CHARS"]:
        invalid(
            "input", f"The last input message is over {config['MAX_MESSAGE_CHARS']} characters."
        )
    total = chars(messages) + len(instructions or "")
    if total > config["CONTEXT_MAX_CHARS"]:
        invalid(
            "input", f"input and instructions are over {config['CONTEXT_MAX_CHARS']} characters."
        )


def parse(body: Any, resolve: Resolve) -> Request:
    """The request; `resolve` finds the caller's stored items that `item_reference`s name."""
    data = load(SCHEMA, body, param=_param)
    instructions, previous = data.get("instructions"), data.get("previous_response_id")
    tools = tuple(data.get("tools") or ())
    choice, parallel = data.get("tool_choice"), data.get("parallel_tool_calls")
    fmt = (data.get("text") or {}).get("format")
    effort = (data.get("reasoning") or {}).get("effort")
    ids = Ids()
    pictures: Pictures = {}
    items = _items(data["input"], ids, resolve, pictures)
    messages = messages_of(items, pictures)
    if not messages or messages[-1]["role"] not in ("user", "tool"):
        invalid("input", "The last input item must be the user's message or a function's output.")
    # The last message's inline images are stored with it (the earlier ones' are not).
    inline = pictures.get(items[-1]["id"], ([], []))[1] if messages[-1]["role"] == "user" else []
    _sizes(messages, instructions)
    options = Options(
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        max_tokens=data.get("max_output_tokens"),
        reasoning_effort=effort,
    )
    echo = {
        "instructions": instructions,
        "max_output_tokens": options.max_tokens,
        "metadata": data.get("metadata") or {},
        "parallel_tool_calls": parallel is not False,
        "previous_response_id": previous,
        "reasoning": {"effort": effort, "summary": None},
        "store": data.get("store") is not False,
        "temperature": options.temperature,
        "text": {"format": _echo_format(fmt)},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [function_tools.echo(tool) for tool in tools],
        "top_p": options.top_p,
        "truncation": data.get("truncation") or "disabled",
        "user": data.get("user"),
    }
    return Request(
        model=data["model"],
        items=items,
        messages=messages,
        instructions=instructions,
        previous_id=previous,
        store=echo["store"],
        stream=bool(data.get("stream")),
        options=options,
        ids=ids,
        tooling=Tooling(tools, *(choice, parallel) if tools else (None, None), fmt),
        echo=echo,
        images=tuple(inline),
    )


def _echo_format(fmt: ResponseFormat | None) -> dict:
    if fmt is None or fmt.type != "json_schema":
        return {"type": fmt.type if fmt else "text"}
    echoed = {"type": "json_schema", "name": fmt.name, "schema": fmt.schema, "strict": fmt.strict}
    return echoed | ({"description": fmt.description} if fmt.description else {})
