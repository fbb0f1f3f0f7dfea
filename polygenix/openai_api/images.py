"""A Chat Completions `image_url` part read into PolyGenix's image part.

`url` is a `data:image/{png,jpeg,gif,webp};base64,...` URL, whose bytes are checked as an upload
is (attachments/images.py: recognised from the bytes, whole, within ATTACHMENT_MAX_BYTES and
ATTACHMENT_MAX_PIXELS), or an `https://` URL, which PolyGenix never fetches: it goes as such to
the providers that take image URLs (others refuse it, a 400 before any call).
"""

import binascii
from typing import Any

from flask import current_app
from flask_smorest import abort

from ..attachments.images import ImageInfo, InvalidImage, inspect
from ..providers.messages import IMAGE_TYPES, ImagePart

DETAILS = ("auto", "low", "high")
MAX_URL_CHARS = 8192


def invalid(param: str, message: str):
    abort(400, message=message, errors={"json": {param: [message]}})


def image_part(
    part: dict[str, Any], where: str, param: str = "messages"
) -> tuple[ImagePart, bytes | None, ImageInfo | None]:
    """The part as PolyGenix's, with the image's bytes and what they are (None for a URL);
    a 400 naming `param` (the request field the part is in) for a bad one."""
    image_url = part.get("image_url")
    if isinstance(image_url, str):  # some clients send the URL alone
        image_url = {"url": image_url}
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        invalid(param, f"{where}: an image_url part needs image_url.url, a string.")
    url: str = image_url["url"]
    detail = image_url.get("detail")
    if detail is not None and detail not in DETAILS:
        invalid(param, f"{where}: image_url.detail must be one of auto, low, high.")
    if url.startswith("https://"):
        if len(url) > MAX_URL_CHARS or any(c.isspace() or c == "\x00" for c in url):
            invalid(param, f"{where}: the image URL is not a valid https URL.")
        found: ImagePart = {"type": "image", "source": {"type": "url", "url": url}}
        data, info = None, None
    elif url.startswith("data:"):
        data, info = _data_url(url, where, param)
        found = {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": info.media_type,
                "data": url.partition(",")[2],
            },
        }
    else:
        invalid(
            param,
            f"{where}: an image URL must be a data: URL (base64) or an https:// URL.",
        )
    if detail is not None:
        found["detail"] = detail
    return found, data, info


def _data_url(url: str, where: str, param: str) -> tuple[bytes, ImageInfo]:
    header, comma, payload = url.partition(",")
    media_type, _, encoding = header.removeprefix("data:").partition(";")
    if not comma or encoding.lower() != "base64":
        invalid(param, f"{where}: a data: URL image must be base64 (data:image/png;base64,...).")
    if media_type.lower() not in IMAGE_TYPES:
        invalid(
            param,
            f"{where}: {media_type or 'no type'} images are not accepted: PNG, JPEG, GIF or WebP.",
        )
    limit = current_app.config["ATTACHMENT_MAX_BYTES"]
    if len(payload) > (limit + 2) // 3 * 4 + 4:
        invalid(param, f"{where}: the image is over ATTACHMENT_MAX_BYTES ({limit} bytes).")
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        invalid(param, f"{where}: the image's base64 data is not valid base64.")
    if len(data) > limit:
        invalid(param, f"{where}: the image is over ATTACHMENT_MAX_BYTES ({limit} bytes).")
    try:
        info = inspect(data, current_app.config["ATTACHMENT_MAX_PIXELS"])
    except InvalidImage as e:
        invalid(param, f"{where}: {e}")
    return data, info
