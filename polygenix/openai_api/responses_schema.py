"""A Responses API request as OpenAI defines it
(https://platform.openai.com/docs/api-reference/responses/create), read into what a PolyGenix
turn needs: the new input (as items, kept, and as chat messages), the instructions, the
response it continues, the generation options, the answer's format, whether to stream and to
store.

What PolyGenix cannot do is a 400 naming the field (`param`): built-in tools (web_search,
file_search...), `background: true`, `conversation`, reusable `prompt`s, input files and
audio, image `file_id`s (function tools: responses_tools.py; images: responses_images.py).
A field OpenAI does not define is a 400 too, as OpenAI answers ("Unknown parameter"). Fields
that change nothing here (`user`, `include`, `service_tier`, `truncation`,
`prompt_cache_key`...) are accepted and ignored.
"""

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from ..chat.tool_loop import chars
from ..providers import ChatMessage, Options, ResponseFormat, Tooling
from ..providers.base import EFFORTS
from ..providers.messages import ContentPart, ImagePart, images_of, text_of
from . import responses_tools as function_tools
from .responses_images import Inline, at_most, input_image
from .schemas import invalid

KNOWN = set(
    "model input instructions previous_response_id store stream max_output_tokens temperature "
    "top_p reasoning text tools tool_choice parallel_tool_calls metadata user background "
    "conversation prompt include service_tier truncation prompt_cache_key "
    "prompt_cache_retention safety_identifier stream_options top_logprobs max_tool_calls".split()
)
ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
# Part types OpenAI defines that PolyGenix does not take (yet): a 400 naming `input`.
UNSUPPORTED_PARTS = {"input_image", "input_file", "input_audio"}  # input_image: a user's only
RESPONSE_ID = re.compile(r"resp_[0-9a-f]{48}")
ITEM_ID = re.compile(r"[a-z]{1,8}_([0-9a-f]{48})[0-9a-f]{4}")
METADATA_KEYS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
FORMAT_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


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


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        invalid(name, f"{name} must be a number from {low:g} to {high:g}.")
    return float(value)


def _text(value: Any, where: str, param: str = "input") -> str:
    if not isinstance(value, str):
        invalid(param, f"{where} must be a string.")
    if "\x00" in value:
        invalid(param, f"{where} must not contain NUL characters.")
    return value


# A new message's images by item id: as a provider is sent them, and its inline images' bytes.
Pictures = dict[str, tuple[list[ImagePart], list[Inline]]]


def _content(content: Any, where: str, role: str, pictures: Pictures, item_id: str) -> list[dict]:
    """A message's content as kept parts (input_text and input_image, or output_text for an
    assistant); a user message's images, as a provider is sent them, go in `pictures`."""
    assistant = role == "assistant"
    kind = "output_text" if assistant else "input_text"
    extra = {"annotations": []} if assistant else {}
    if isinstance(content, str):
        return [{"type": kind, "text": _text(content, f"{where}.content")} | extra]
    if not isinstance(content, list) or not content:
        invalid("input", f"{where}.content must be a string or a non-empty list of parts.")
    parts, images, inline = [], [], []
    for n, part in enumerate(content):
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype == "input_image" and role == "user":
            kept, image, found = input_image(part, f"{where}.content[{n}]")
            parts.append(kept)
            images.append(image)
            inline += [found] if found is not None else []
            continue
        if ptype in UNSUPPORTED_PARTS:
            invalid("input", f"{where}.content[{n}]: {ptype} parts are not supported here.")
        if ptype not in ("input_text", "output_text", "text") or "text" not in part:
            invalid("input", f"{where}.content[{n}] must be a text part (input_text).")
        parts.append({"type": kind, "text": _text(part["text"], f"{where}.content[{n}].text")})
        parts[-1] |= extra
    if images:
        at_most(len(images), where)
        pictures[item_id] = (images, inline)
    return parts


Resolve = Callable[[str], dict | None]  # an item_reference's id: the item it names, if any


def _item(raw: Any, n: int, new_id: Ids, resolve: Resolve, pictures: Pictures) -> dict | None:
    """An input item, checked and kept as OpenAI lists it (with an id); None for one that
    holds nothing to resend (a reasoning item a client sends back). An `item_reference` is the
    caller's stored item it names (a 400 if it names none)."""
    where = f"input[{n}]"
    if not isinstance(raw, dict):
        invalid("input", f"{where} must be an object (an input item).")
    kind = raw.get("type", "message")
    if kind == "item_reference":
        found = resolve(raw.get("id")) if isinstance(raw.get("id"), str) else None
        if found is None:
            invalid("input", f"{where}: Item with id {raw.get('id')!r} not found.")
        return None if found["type"] == "reasoning" else found
    if kind == "reasoning":
        return None
    if kind == "function_call":
        return function_tools.call_item(raw, where, new_id("fc"))
    if kind == "function_call_output":
        return function_tools.output_item(raw, where, new_id("fco"))
    if kind != "message":
        invalid("input", f"{where}: items of type {kind!r} are not supported by this server.")
    role = raw.get("role")
    if not isinstance(role, str) or role not in ROLES:
        invalid("input", f"{where}.role must be one of user, system, developer, assistant.")
    item_id = new_id("msg")
    parts = _content(raw.get("content"), where, role, pictures, item_id)
    return {"id": item_id, "type": "message", "role": role, "content": parts} | {
        "status": "completed"
    }


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


def _input(body: dict, new_id: Ids, resolve: Resolve, pictures: Pictures) -> list[dict]:
    raw = body.get("input")
    if isinstance(raw, str):
        text = _text(raw, "input")
        item = {"id": new_id("msg"), "type": "message", "role": "user", "status": "completed"}
        return [item | {"content": [{"type": "input_text", "text": text}]}]
    if not isinstance(raw, list) or not raw:
        invalid("input", "input must be a string or a non-empty list of input items.")
    most = current_app.config["V1_MAX_MESSAGES"]
    if len(raw) > most:
        invalid("input", f"input must hold at most {most} items, not {len(raw)}.")
    found = (_item(e, n, new_id, resolve, pictures) for n, e in enumerate(raw))
    return [item for item in found if item is not None]


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


def _format(body: dict) -> ResponseFormat | None:
    text = body.get("text")
    if text is None:
        return None
    if not isinstance(text, dict):
        invalid("text", "text must be an object.")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        invalid("text.format", "text.format.type must be text, json_object or json_schema.")
    name, schema, strict = fmt.get("name"), fmt.get("schema"), fmt.get("strict")
    if not isinstance(name, str) or not FORMAT_NAME.fullmatch(name):
        invalid("text.format.name", "text.format.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -.")
    if not isinstance(schema, dict):
        invalid("text.format.schema", "text.format.schema must be a JSON Schema object.")
    if strict is not None and not isinstance(strict, bool):
        invalid("text.format.strict", "text.format.strict must be true or false.")
    described = fmt.get("description")
    if described is not None and not isinstance(described, str):
        invalid("text.format.description", "text.format.description must be a string.")
    return ResponseFormat("json_schema", name, schema, strict, described)


def _metadata(body: dict) -> dict:
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > METADATA_KEYS:
        invalid("metadata", f"metadata must be an object of at most {METADATA_KEYS} pairs.")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS or "\x00" in key:
            invalid("metadata", f"metadata keys must be at most {METADATA_KEY_CHARS} characters.")
        if not isinstance(value, str) or len(value) > METADATA_VALUE_CHARS or "\x00" in value:
            invalid(
                "metadata", f"metadata values must be strings of at most {METADATA_VALUE_CHARS}."
            )
    return metadata


def _refused(body: dict) -> None:
    for name in body:
        if name not in KNOWN:
            invalid(name, f"Unknown parameter: '{name}'.")
    if body.get("background"):
        invalid("background", "background responses are not supported by this server.")
    if body.get("conversation") is not None:
        invalid("conversation", "conversation objects are not supported by this server.")
    if body.get("prompt") is not None:
        invalid("prompt", "reusable prompts are not supported by this server.")
    if body.get("top_logprobs"):
        invalid("top_logprobs", "logprobs are not supported by this server.")
    for name in ("stream", "store", "parallel_tool_calls", "background"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            invalid(name, f"{name} must be true or false.")


def _effort(body: dict) -> str | None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        invalid("reasoning", "reasoning must be an object.")
    effort = reasoning.get("effort")
    if effort is not None and effort not in EFFORTS:
        invalid("reasoning.effort", f"reasoning.effort must be one of {', '.join(EFFORTS)}.")
    return effort


def parse(body: Any, resolve: Resolve) -> Request:
    """The request; `resolve` finds the caller's stored items that `item_reference`s name."""
    if not isinstance(body, dict):
        invalid("body", "The body must be a JSON object.")
    _refused(body)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200 or "\x00" in model:
        invalid("model", "model must be a model name (1 to 200 characters).")
    instructions = body.get("instructions")
    if instructions is not None:
        _text(instructions, "instructions", "instructions")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        invalid("previous_response_id", "previous_response_id must be a string.")
    tools = function_tools.tools(body)
    choice = function_tools.tool_choice(body, tools)
    parallel = body.get("parallel_tool_calls")
    fmt = _format(body)
    effort = _effort(body)
    ids = Ids()
    pictures: Pictures = {}
    items = _input(body, ids, resolve, pictures)
    messages = messages_of(items, pictures)
    if not messages or messages[-1]["role"] not in ("user", "tool"):
        invalid("input", "The last input item must be the user's message or a function's output.")
    # The last message's inline images are stored with it (the earlier ones' are not).
    inline = pictures.get(items[-1]["id"], ([], []))[1] if messages[-1]["role"] == "user" else []
    _sizes(messages, instructions)
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens
    ):
        invalid("max_output_tokens", "max_output_tokens must be a whole number of at least 1.")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        invalid("user", "user must be a string.")
    options = Options(
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=max_tokens,
        reasoning_effort=effort,
    )
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "metadata": _metadata(body),
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": previous,
        "reasoning": {"effort": effort, "summary": None},
        "store": body.get("store") is not False,
        "temperature": options.temperature,
        "text": {"format": _echo_format(fmt)},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [function_tools.echo(tool) for tool in tools],
        "top_p": options.top_p,
        "truncation": "disabled",
        "user": user,
    }
    return Request(
        model=model,
        items=items,
        messages=messages,
        instructions=instructions,
        previous_id=previous,
        store=echo["store"],
        stream=bool(body.get("stream")),
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
