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

from typing import Any

from flask import current_app

from ..attachments.images import ImageInfo
from ..providers.messages import ImagePart
from .images import image_part
from .schemas import invalid

# OpenAI's details; "original" (the image as it is) is the provider's default here.
DETAILS = ("auto", "low", "high", "original")

Inline = tuple[bytes, ImageInfo]


def input_image(part: dict[str, Any], where: str) -> tuple[dict, ImagePart, Inline | None]:
    """The part as kept (with its data: URL while the request lasts), as a provider is sent
    it, and its inline image (None for a URL)."""
    if part.get("file_id") is not None:
        invalid(
            "input",
            f"{where}.file_id: file ids are not supported by this server (it has no Files API);"
            " send image_url, a data: URL (base64) or an https:// URL.",
        )
    url = part.get("image_url")
    if not isinstance(url, str):
        invalid("input", f"{where}.image_url is required: a data: URL (base64) or an https URL.")
    detail = part.get("detail") or "auto"
    if detail not in DETAILS:
        invalid("input", f"{where}.detail must be one of {', '.join(DETAILS)}.")
    image, data, info = image_part({"image_url": {"url": url}}, where, param="input")
    if detail in ("low", "high"):
        image["detail"] = detail
    kept = {"type": "input_image", "detail": detail, "file_id": None, "image_url": url}
    return kept, image, (data, info) if data is not None else None


def at_most(count: int, where: str) -> None:
    most = current_app.config["ATTACHMENTS_PER_MESSAGE"]
    if count > most:
        invalid("input", f"{where}: at most {most} images per message.")


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
                url = f"data:{source['media_type']};base64,{source['data']}"
                part = {**part, "image_url": url}
        content.append(part)
    return {**item, "content": content}
