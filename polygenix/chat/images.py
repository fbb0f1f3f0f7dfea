"""Images in a chat turn: a new message's own (its attachments, or a /v1 request's inline
images), the earlier messages' images sent again under ATTACHMENT_CONTEXT_IMAGES, a GIF sent as
a PNG of its first frame to a provider that takes no GIF (Gemini), and a provider's refusal of
an image, answered before any call.

What is sent again: of the earlier messages in the turn's context, the newest
ATTACHMENT_CONTEXT_IMAGES images (attachments of the newest messages first); older messages go
as their text alone. A provider that takes no images (or not these) is sent the earlier
messages' text alone; a new message's images it cannot take are refused (422 on the native API,
400 on /v1), naming the provider and why.
"""

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from flask import current_app
from flask_smorest import abort

from ..attachments import store
from ..attachments.images import InvalidImage, first_frame_png
from ..providers import ChatMessage, Provider, UnsupportedInput
from ..providers.messages import ContentPart, ImagePart, base64_source, has_images, text_of

# What an image counts for in a budget reservation's estimate, in characters: about 1,100
# tokens, the most OpenAI and Anthropic charge for an image of ordinary size.
IMAGE_CHARS = 4 * 1100


def resend(asked: dict[int, ChatMessage], config: Mapping[str, Any]) -> None:
    """Give the context's user messages (by message id) their images, the newest
    ATTACHMENT_CONTEXT_IMAGES of them: one query, reading no other image's bytes."""
    newest = config.get("ATTACHMENT_CONTEXT_IMAGES", 0)
    if not asked or newest <= 0:
        return
    for message_id, images in store.images_for(list(asked), newest).items():
        message = asked[message_id]
        message["content"] = store.parts(text_of(message["content"]), images)


def of_message(message_id: int, config: Mapping[str, Any]) -> list[ImagePart]:
    """An existing question's own images (regenerated or edited with its attachments kept)."""
    return store.images_for([message_id], config["ATTACHMENTS_PER_MESSAGE"]).get(message_id, [])


def without_images(messages: list[ChatMessage]) -> list[ChatMessage]:
    return [
        m if isinstance(m["content"], str) else {**m, "content": text_of(m["content"])}
        for m in messages
    ]


def _is_gif(part: ContentPart) -> bool:
    return (
        part["type"] == "image"
        and part["source"]["type"] == "base64"
        and part["source"]["media_type"] == "image/gif"
    )


def _as_png(part: ContentPart, max_pixels: int) -> ContentPart:
    if part["type"] != "image" or part["source"]["type"] != "base64":
        return part
    try:
        data = base64.b64decode(part["source"]["data"])
    except (binascii.Error, ValueError) as e:
        raise InvalidImage("The GIF's base64 does not decode.") from e
    png = base64_source("image/png", first_frame_png(data, max_pixels))
    return {**part, "source": png}


def gifs_as_png(messages: list[ChatMessage]) -> list[ChatMessage]:
    """`messages` with each inline GIF as a PNG of its first frame (bounded by
    ATTACHMENT_MAX_PIXELS), for a provider that takes no GIF."""
    most = current_app.config["ATTACHMENT_MAX_PIXELS"]
    return [
        m
        if isinstance(m["content"], str) or not any(map(_is_gif, m["content"]))
        else {**m, "content": [_as_png(p, most) if _is_gif(p) else p for p in m["content"]]}
        for m in messages
    ]


def _refusal(
    provider: Provider, model: str, messages: list[ChatMessage], field: str, status: int
) -> tuple[list[ChatMessage], UnsupportedInput | None]:
    """`messages`, GIFs made PNGs if the provider takes no GIF, and what it still refuses."""
    try:
        provider.check(messages, model)
        return messages, None
    except UnsupportedInput as e:
        if e.image_type != "image/gif":
            return messages, e
    try:
        messages = gifs_as_png(messages)
    except InvalidImage as e:
        abort(status, message=str(e), errors={"json": {field: [str(e)]}})
    try:
        provider.check(messages, model)
        return messages, None
    except UnsupportedInput as e:
        return messages, e


def checked(
    provider: Provider, model: str | None, messages: list[ChatMessage], *, status: int, strip: bool
) -> list[ChatMessage]:
    """`messages` as the provider can take them: a GIF it refuses goes as a PNG of its first
    frame. What it still refuses: the earlier messages' images are left out when `strip` (the
    native API's own context), else, and for the last message's images, a `status` error
    (nothing is stored, the provider is not called)."""
    if model is None or not has_images(messages):
        return messages
    field = "attachment_ids" if status == 422 else "messages"
    messages, refusal = _refusal(provider, model, messages, field, status)
    if refusal is None:
        return messages
    if strip and not has_images(messages[-1:]):
        return without_images(messages)
    if strip:
        kept, refusal = _refusal(
            provider, model, without_images(messages[:-1]) + messages[-1:], field, status
        )
        if refusal is None:
            return kept
    field = "attachment_ids" if status == 422 else refusal.field
    abort(status, message=refusal.message, errors={"json": {field: [refusal.message]}})
