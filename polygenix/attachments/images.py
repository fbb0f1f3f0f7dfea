"""What an uploaded file is, from its bytes alone: PNG, JPEG, GIF or WebP, whole, and within
ATTACHMENT_MAX_PIXELS. The declared type and the file name are never trusted.

The magic number picks the format; Pillow (the maintained imaging library for Python) then reads
the header for the size, refuses an image whose pixels would be over the limit before decoding
any (a decompression bomb: a few kilobytes that decode to gigabytes), and decodes the rest to
find truncated or corrupt data. Decoding is bounded by the pixel limit, so it never takes a
worker's memory.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "PNG"),
    (b"\xff\xd8\xff", "image/jpeg", "JPEG"),
    (b"GIF87a", "image/gif", "GIF"),
    (b"GIF89a", "image/gif", "GIF"),
)
ACCEPTED = "PNG, JPEG, GIF or WebP"


class InvalidImage(ValueError):
    """Not an image PolyGenix takes: `reason` says why, for the client."""


class TooManyPixels(InvalidImage):
    """An image whose decoded size would be over ATTACHMENT_MAX_PIXELS."""


@dataclass(frozen=True)
class ImageInfo:
    media_type: str
    width: int
    height: int
    size: int
    sha256: str


def sniff(data: bytes) -> tuple[str, str] | None:
    """(media type, Pillow format) from the magic number, or None."""
    for magic, media_type, fmt in MAGIC:
        if data.startswith(magic):
            return media_type, fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "WEBP"
    return None


def inspect(data: bytes, max_pixels: int) -> ImageInfo:
    """The image `data` holds; InvalidImage (TooManyPixels) when it is not one PolyGenix takes."""
    found = sniff(data)
    if found is None:
        raise InvalidImage(f"The file is not a {ACCEPTED} image (judged by its bytes).")
    media_type, fmt = found
    with warnings.catch_warnings():
        # Pillow's own bomb check warns past 89 million pixels; ours is stricter and comes first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise TooManyPixels(
                        f"The image is {width}×{height} pixels, over the limit of {max_pixels}."
                    )
                image.load()  # decodes the first frame: truncated or corrupt data fails here
        except InvalidImage:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
            raise InvalidImage(
                f"The file is not a whole {fmt} image: its data is truncated or corrupt."
            ) from e
        except Image.DecompressionBombError as e:
            raise TooManyPixels(f"The image has too many pixels (over {max_pixels}).") from e
    if width < 1 or height < 1:
        raise InvalidImage("The image has no pixels.")
    return ImageInfo(media_type, width, height, len(data), hashlib.sha256(data).hexdigest())
