"""A Chat Completions `image_url` part read into PolyGenix's image part.

`url` is a `data:image/{png,jpeg,gif,webp};base64,...` URL, whose bytes are checked as an upload
is (attachments/images.py: recognised from the bytes, whole, within ATTACHMENT_MAX_BYTES and
ATTACHMENT_MAX_PIXELS), or an `https://` URL, which PolyGenix never fetches: it goes as such to
the providers that take image URLs (others refuse it, a 400 before any call).
"""

import binascii
from typing import NamedTuple

import marshmallow as ma
from flask import current_app
from marshmallow import fields, post_load, pre_load, validate

from ..attachments.images import ImageInfo, InvalidImage, inspect
from ..providers.messages import IMAGE_TYPES, Base64Source, ImagePart
from .validation import Schema

DETAILS = ("auto", "low", "high")
MAX_URL_CHARS = 8192


class Image(NamedTuple):
    """An image part as a provider is sent it, and an inline image's bytes and what they are."""

    part: ImagePart
    url: str  # as the client sent it
    data: bytes | None = None
    info: ImageInfo | None = None


class ImageUrl(fields.Field):
    """An image's URL: a data: URL (base64) or an https:// URL, read into an Image."""

    default_error_messages = {
        "invalid": "must be a string: a data: URL (base64) or an https:// URL.",
        "required": "is required: a data: URL (base64) or an https URL.",
        "null": "is required: a data: URL (base64) or an https URL.",
    }

    def _deserialize(self, value, attr, data, **kwargs) -> Image:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if value.startswith("https://"):
            if len(value) > MAX_URL_CHARS or any(c.isspace() or c == "\x00" for c in value):
                raise ma.ValidationError(": the image URL is not a valid https URL.")
            return Image({"type": "image", "source": {"type": "url", "url": value}}, value)
        if value.startswith("data:"):
            return _data_url(value)
        raise ma.ValidationError(": an image URL must be a data: URL (base64) or an https:// URL.")


def _data_url(url: str) -> Image:
    header, comma, payload = url.partition(",")
    media_type, _, encoding = header.removeprefix("data:").partition(";")
    if not comma or encoding.lower() != "base64":
        raise ma.ValidationError(": a data: URL image must be base64 (data:image/png;base64,...).")
    if media_type.lower() not in IMAGE_TYPES:
        raise ma.ValidationError(
            f": {media_type or 'no type'} images are not accepted: PNG, JPEG, GIF or WebP."
        )
    limit = current_app.config["ATTACHMENT_MAX_BYTES"]
    too_large = f": the image is over ATTACHMENT_MAX_BYTES ({limit} bytes)."
    if len(payload) > (limit + 2) // 3 * 4 + 4:
        raise ma.ValidationError(too_large)
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ma.ValidationError(": the image's base64 data is not valid base64.") from None
    if len(data) > limit:
        raise ma.ValidationError(too_large)
    try:
        info = inspect(data, current_app.config["ATTACHMENT_MAX_PIXELS"])
    except InvalidImage as e:
        raise ma.ValidationError(f": {e}") from None
    # Decoded strictly, it holds the base64 alphabet alone: ASCII, which a provider's body
    # takes as it is (jsonbody.py).
    source: Base64Source = {
        "type": "base64",
        "media_type": info.media_type,
        "data": payload.encode("ascii"),
    }
    return Image({"type": "image", "source": source}, url, data, info)


class ImageUrlSchema(Schema):
    error_messages = {"type": "must be an object (url, detail) or a URL."}

    url = ImageUrl(required=True)
    detail = fields.String(allow_none=True, validate=validate.OneOf(DETAILS))

    @pre_load
    def _url_alone(self, data, **kwargs):
        # Some clients send the URL alone.
        return {"url": data} if isinstance(data, str) else data

    @post_load
    def _image(self, data, **kwargs) -> Image:
        image: Image = data["url"]
        if data.get("detail") is not None:
            image.part["detail"] = data["detail"]
        return image


class ImageUrlPartSchema(Schema):
    """`{"type": "image_url", "image_url": {"url": ..., "detail": ...}}`, as an Image."""

    image_url = fields.Nested(
        ImageUrlSchema,
        required=True,
        error_messages={"required": "is required: an object (url, detail) or a URL."},
    )

    @post_load
    def _image(self, data, **kwargs) -> Image:
        return data["image_url"]
