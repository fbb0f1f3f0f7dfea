"""The message model every provider is sent: text, images, the assistant's tool calls and the
results of those calls, as plain dicts of JSON's types, but for an inline image's base64: ASCII
bytes, which a provider's JSON body takes as they are (jsonbody.py).

A message's `content` is a string, as it always was, or a list of parts: text, and images given
inline (base64 with their media type) or as an https URL (which PolyGenix never fetches). An
assistant message may carry `tool_calls` (its text then often ""); a "tool" message answers one
of them by `tool_call_id`. Each wire format turns these into its provider's own shapes, and
refuses with `UnsupportedInput` what its provider cannot take.
"""

import base64
import json
import secrets
from typing import Any, Literal, NotRequired, TypedDict, cast

# Image types PolyGenix passes on (OpenAI's, Anthropic's and most providers' list).
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class Base64Source(TypedDict):
    type: Literal["base64"]
    media_type: str  # one of IMAGE_TYPES
    # The image's bytes base64-encoded (standard alphabet, padded), as ASCII bytes: its text
    # (`.decode()`, 1.4 MB for a 1 MiB image) only where something needs it as text.
    data: bytes


def base64_source(media_type: str, image: bytes) -> Base64Source:
    """The inline source of an image's bytes."""
    return {"type": "base64", "media_type": media_type, "data": base64.b64encode(image)}


class URLSource(TypedDict):
    type: Literal["url"]
    url: str  # https://


class ImagePart(TypedDict):
    type: Literal["image"]
    source: Base64Source | URLSource
    detail: NotRequired[Literal["auto", "low", "high"]]  # OpenAI's; other providers ignore it


ContentPart = TextPart | ImagePart


class ToolCall(TypedDict):
    """A call the model made: `arguments` is the JSON text exactly as the model produced it
    (an object's serialisation where the provider gives an object). `provider_data` is what the
    provider needs back with the call and that no other provider understands (Gemini's
    `thoughtSignature`): keep it with the call and send it back unchanged."""

    id: str
    name: str
    arguments: str
    provider_data: NotRequired[dict[str, str]]


class ChatMessage(TypedDict):
    role: str  # "system", "user", "assistant" or "tool"
    content: str | list[ContentPart]  # "" when an assistant message only calls tools
    tool_calls: NotRequired[list[ToolCall]]  # an assistant message's calls
    tool_call_id: NotRequired[str]  # a "tool" message: the call it answers


class UnsupportedInput(ValueError):
    """The request holds something this provider cannot take (an image for a model with no
    image input, an image URL where the bytes are needed, an image type it does not read...).
    Raised before any call; `field` names the request field at fault ("messages"), and
    `image_type` the media type of an image refused for its type."""

    def __init__(self, message: str, field: str = "messages", image_type: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.image_type = image_type


def plain(messages: list[ChatMessage]) -> bool:
    """Whether every message is only a role and a string (no parts, calls or results): the
    common case, which each format sends the way it always did, at no extra cost."""
    return all(len(m) == 2 and type(m["content"]) is str for m in messages)


def plain_copies(messages: list[ChatMessage]) -> list[dict[str, Any]] | None:
    """Each message as {"role", "content"} when every one is plain (see `plain`), else None:
    the formats whose plain messages are exactly that build them in one pass."""
    sent = [
        {"role": m["role"], "content": c}
        if len(m) == 2 and type(c := m["content"]) is str
        else None
        for m in messages
    ]
    return None if None in sent else cast(list[dict[str, Any]], sent)


def text_of(content: str | list[ContentPart]) -> str:
    """A message's text: the string itself, or its text parts joined."""
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def images_of(content: str | list[ContentPart]) -> list[ImagePart]:
    if isinstance(content, str):
        return []
    return [part for part in content if part["type"] == "image"]


def has_images(messages: list[ChatMessage]) -> bool:
    return any(not isinstance(m["content"], str) and images_of(m["content"]) for m in messages)


def new_call_id() -> str:
    """An id for a call whose provider gave none: random, so unique in any conversation."""
    return "call_" + secrets.token_hex(12)


def call_names(messages: list[ChatMessage]) -> dict[str, str]:
    """The function name of every call the assistant made, by call id (Gemini and Ollama name
    the function a result answers; the result only gives the id)."""
    return {
        call["id"]: call["name"] for m in messages for call in m.get("tool_calls") or () if call
    }


def arguments_object(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as an object, for the providers that take an object ("" is {});
    arguments that are not a JSON object are refused."""
    text = call["arguments"]
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise UnsupportedInput(
            f"The arguments of tool call {call['id']!r} are not a JSON object; this provider "
            "takes a call's arguments only as an object."
        )
    return value


def dumps(value: Any) -> str:
    """JSON text for arguments a provider gave as an object (non-ASCII kept as it is)."""
    return json.dumps(value, ensure_ascii=False)
