"""Images in a chat turn: a new message's own (its attachments, or a /v1 request's inline
images), the earlier messages' images sent again under ATTACHMENT_CONTEXT_IMAGES, and a
provider's refusal of an image, answered before any call.

What is sent again: of the earlier messages in the turn's context, the newest
ATTACHMENT_CONTEXT_IMAGES images (attachments of the newest messages first); older messages go
as their text alone. A provider that takes no images (or not these) is sent the earlier
messages' text alone; a new message's images it cannot take are refused (422 on the native API,
400 on /v1), naming the provider and why.
"""

from collections.abc import Mapping
from typing import Any

from flask_smorest import abort

from ..attachments import store
from ..providers import ChatMessage, Provider, UnsupportedInput
from ..providers.messages import ImagePart, has_images, text_of

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


def checked(
    provider: Provider, model: str | None, messages: list[ChatMessage], *, status: int, strip: bool
) -> list[ChatMessage]:
    """`messages` as the provider can take them. What it refuses: the earlier messages' images
    are left out when `strip` (the native API's own context), else, and for the last message's
    images, a `status` error (nothing is stored, the provider is not called)."""
    if model is None or not has_images(messages):
        return messages
    try:
        provider.check(messages, model)
        return messages
    except UnsupportedInput as e:
        refusal = e
    if strip and not has_images(messages[-1:]):
        return without_images(messages)
    if strip:
        try:
            kept = without_images(messages[:-1]) + messages[-1:]
            provider.check(kept, model)
            return kept
        except UnsupportedInput as e:
            refusal = e
    field = "attachment_ids" if status == 422 else refusal.field
    abort(status, message=refusal.message, errors={"json": {field: [refusal.message]}})
