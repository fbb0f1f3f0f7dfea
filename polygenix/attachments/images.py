"""What an uploaded file is, from its bytes alone: PNG, JPEG, GIF or WebP, whole, and within
ATTACHMENT_MAX_PIXELS. The declared type and the file name are never trusted.

The magic number picks the format; Pillow (the maintained imaging library for Python) then reads
the header for the size, and an image whose pixels would be over the limit is refused before any
is decoded (a decompression bomb: a few kilobytes that decode to gigabytes). A WebP's size is
read from its header before Pillow opens it, as Pillow's WebP decoder takes the memory of the
whole canvas when it is made.

Whether the image is whole is judged from its structure, not by decoding its pixels (which
would cost 2 ms for a megabyte of PNG and 60 ms for one of WebP, on every upload): a PNG's
chunks to IEND, each one's CRC checked; a JPEG's markers to its first scan, then its end of
image marker after that scan; a GIF's blocks to its trailer; a WebP's RIFF container, its
length and chunks. A truncated file, or one whose bytes changed on the way (a PNG's CRC), is
refused; an image whose compressed pixels were made wrong on purpose within a sound structure
reaches the provider, which refuses it with its own words.
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
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # IEND: no data, so always this CRC
_JPEG_END = b"\xff\xd9"  # EOI: in entropy-coded data a 0xFF byte is followed by 0x00 or RSTn


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


class _Broken(Exception):
    """The file's structure ends early or does not hold together."""


def _webp_size(data: bytes) -> tuple[int, int]:
    """A WebP's canvas from its first chunk (VP8, VP8L or VP8X), per the WebP container spec."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise _Broken


def _webp_whole(image: Image.Image, data: bytes) -> None:
    # Pillow's decoder, made at open, has already read the chunks; the length must be there.
    if int.from_bytes(data[4:8], "little") + 8 > len(data):
        raise _Broken


def _png_whole(image: Image.Image, data: bytes) -> None:
    image.verify()  # every chunk's CRC, up to IEND
    if data.rfind(_PNG_END) < 0:  # IEND's own CRC, which verify() leaves unread
        raise _Broken


def _jpeg_whole(image: Image.Image, data: bytes) -> None:
    # Pillow's open stops at the first scan's data, which the end of image must follow.
    if data.find(_JPEG_END, image.fp.tell()) < 0:
        raise _Broken


def _sub_blocks(data: bytes, at: int) -> int:
    """Past the data sub-blocks starting at `at` (each a length byte, then that many bytes)."""
    while True:
        length = data[at]
        at += 1 + length
        if length == 0:
            return at


def _gif_whole(image: Image.Image, data: bytes) -> None:
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # the global colour table
    frames = 0
    try:
        while True:
            block = data[at]
            if block == 0x3B:  # the trailer
                break
            if block == 0x21:  # an extension: its label, then its sub-blocks
                at = _sub_blocks(data, at + 2)
            elif block == 0x2C:  # an image: its descriptor, colour table, LZW size, data
                flags = data[at + 9]
                at += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
                at = _sub_blocks(data, at + 1)
                frames += 1
            else:
                raise _Broken
    except IndexError:
        raise _Broken from None
    if not frames:
        raise _Broken


WHOLE = {"PNG": _png_whole, "JPEG": _jpeg_whole, "GIF": _gif_whole, "WEBP": _webp_whole}


def _too_many(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooManyPixels(
            f"The image is {width}×{height} pixels, over the limit of {max_pixels}."
        )


def inspect(data: bytes, max_pixels: int) -> ImageInfo:
    """The image `data` holds; InvalidImage (TooManyPixels) when it is not one PolyGenix takes."""
    found = sniff(data)
    if found is None:
        raise InvalidImage(f"The file is not a {ACCEPTED} image (judged by its bytes).")
    media_type, fmt = found
    broken = InvalidImage(f"The file is not a whole {fmt} image: its data is truncated or corrupt.")
    with warnings.catch_warnings():
        # Pillow's own bomb check warns past 89 million pixels; ours is stricter and comes first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            if fmt == "WEBP":
                _too_many(*_webp_size(data), max_pixels)
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                width, height = image.size
                _too_many(width, height, max_pixels)
                WHOLE[fmt](image, data)
        except InvalidImage:
            raise
        except (_Broken, UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
            raise broken from e
        except Image.DecompressionBombError as e:
            raise TooManyPixels(f"The image has too many pixels (over {max_pixels}).") from e
    if width < 1 or height < 1:
        raise InvalidImage("The image has no pixels.")
    return ImageInfo(media_type, width, height, len(data), hashlib.sha256(data).hexdigest())


def first_frame_png(data: bytes, max_pixels: int) -> bytes:
    """A GIF's first frame as a PNG, for a provider that takes no GIF: decoded within
    `max_pixels` (InvalidImage as `inspect`, and for pixel data that does not decode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=["GIF"]) as image:
                _too_many(*image.size, max_pixels)
                image.seek(0)
                out = io.BytesIO()
                image.save(out, format="PNG")  # its palette, and its transparency, kept
                return out.getvalue()
        except InvalidImage:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
            raise InvalidImage("The GIF's first frame could not be decoded.") from e
        except Image.DecompressionBombError as e:
            raise TooManyPixels(f"The image has too many pixels (over {max_pixels}).") from e
