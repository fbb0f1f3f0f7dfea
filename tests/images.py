"""Images for tests, made with Pillow: small real files of each type, and hostile ones; and the
ways tests send them (an upload, base64, a data: URL, a /v1 chat message)."""

import base64
import io
import struct
import zlib

from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

UPLOAD = "/api/ai_chat/attachments"


def image(fmt: str = "PNG", size: tuple[int, int] = (4, 3), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def png(size=(4, 3)) -> bytes:
    return image("PNG", size)


def jpeg(size=(4, 3)) -> bytes:
    return image("JPEG", size)


def gif(size=(4, 3)) -> bytes:
    return image("GIF", size)


def webp(size=(4, 3)) -> bytes:
    return image("WEBP", size)


def noisy_png(nbytes: int) -> bytes:
    """A PNG of about `nbytes` that does not compress (random pixels, seeded)."""
    import random

    side = int((nbytes / 3) ** 0.5) + 1
    rng = random.Random(7)
    raw = bytes(rng.getrandbits(8) for _ in range(side * side * 3))
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), raw).save(out, format="PNG", compress_level=0)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bomb(side: int = 30_000) -> bytes:
    """A valid PNG header claiming side×side pixels, with a tiny compressed body: kilobytes on
    the wire, gigabytes decoded."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * side
    body = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def animated(fmt: str) -> bytes:
    """A two-frame animated GIF or WebP."""
    frames = [Image.new("RGB", (6, 4), c) for c in ((250, 0, 0), (0, 250, 0))]
    out = io.BytesIO()
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def flipped(data: bytes, at: int) -> bytes:
    """`data` with one bit of byte `at` changed (from the end when negative)."""
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def upload(client, headers, data: bytes) -> int:
    """An attachment uploaded through the native API: its id."""
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), "x.png")})
    response = client.post(
        UPLOAD,
        headers=headers,
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code == 201, response.json
    return response.json["id"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, media_type="image/png") -> str:
    return f"data:{media_type};base64,{b64(data)}"


def image_message(url: str, text="What is this?", **extra) -> list[dict]:
    """A /v1 chat user message: the text, then the image at `url`."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url} | extra},
            ],
        }
    ]
