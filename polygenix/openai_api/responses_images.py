"""`input_image` parts of a Responses input message (OpenAI's ResponseInputImageParam:
`{"type": "input_image", "image_url": ..., "detail": ..., "file_id": ...}`), read by the very
code that reads Chat Completions' `image_url` parts (images.py): a `data:` URL's bytes checked
as an upload's, an `https://` URL never fetched. `file_id` is a 400: PolyGenix has no Files API.

What is kept of them: a stored response's input items hold no image bytes. The last input
message's inline images are stored as its question's attachments (counted in
ATTACHMENT_QUOTA_BYTES, sent again by a continuation under ATTACHMENT_CONTEXT_IMAGES), and
`input_items` lists them as data: URLs made from those; an earlier message's inline image is
kept with `image_url` null. https URLs are kept as given.
"""

from typing import NamedTuple

from marshmallow import fields, post_load, validate

from ..attachments.images import ImageInfo
from ..providers.messages import ImagePart
from .images import Image, ImageUrl
from .validation import Refused, Schema

# OpenAI's details; "original" (the image as it is) is the provider's default here.
DETAILS = ("auto", "low", "high", "original")

Inline = tuple[bytes, ImageInfo]


class Picture(NamedTuple):
    """An input_image part: as kept (with its data: URL while the request lasts), as a provider
    is sent it, and its inline image (None for a URL)."""

    kept: dict
    image: ImagePart
    inline: Inline | None


class InputImageSchema(Schema):
    file_id = Refused(
        ": file ids are not supported by this server (it has no Files API);"
        " send image_url, a data: URL (base64) or an https:// URL.",
        any_value=True,
    )
    image_url = ImageUrl(required=True)
    detail = fields.String(
        allow_none=True,
        validate=validate.OneOf(DETAILS, error=f"must be one of {', '.join(DETAILS)}."),
    )

    @post_load
    def _picture(self, data, **kwargs) -> Picture:
        found: Image = data["image_url"]
        detail = data.get("detail") or "auto"
        if detail in ("low", "high"):
            found.part["detail"] = detail
        kept = {"type": "input_image", "detail": detail, "file_id": None, "image_url": found.url}
        inline = (found.data, found.info) if found.data is not None else None
        return Picture(kept, found.part, inline)


def _inline(part: dict) -> bool:
    return part.get("type") == "input_image" and str(part.get("image_url")).startswith("data:")


def without_bytes(items: list[dict]) -> list[dict]:
    """Input items as stored: their inline images' data: URLs left out (null)."""
    if not any(i.get("type") == "message" and any(map(_inline, i["content"])) for i in items):
        return items
    return [
        {**i, "content": [{**p, "image_url": None} if _inline(p) else p for p in i["content"]]}
        if i.get("type") == "message"
        else i
        for i in items
    ]


def _stored_image(part: dict) -> bool:
    return part.get("type") == "input_image" and part.get("image_url") is None


def asked_with_images(items: list[dict]) -> bool:
    """Whether the last input item is a user message whose inline images were stored."""
    last = items[-1] if items else {}
    return (
        last.get("type") == "message"
        and last.get("role") == "user"
        and any(_stored_image(p) for p in last["content"])
    )


def with_images(item: dict, pictures: list[ImagePart]) -> dict:
    """A stored last input message with its stored images as data: URLs, in order."""
    found = iter(pictures)
    content = []
    for part in item["content"]:
        if _stored_image(part):
            picture = next(found, None)
            if picture is not None and picture["source"]["type"] == "base64":
                source = picture["source"]
                url = f"data:{source['media_type']};base64,{source['data'].decode()}"
                part = {**part, "image_url": url}
        content.append(part)
    return {**item, "content": content}
