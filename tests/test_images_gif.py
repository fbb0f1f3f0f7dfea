"""A GIF to a provider that takes none (Gemini): sent as a PNG of its first frame, from the
native API and /v1, in a new message and in context, the stored attachment left a GIF."""

import base64
import io

import pytest
from PIL import Image

from polygenix.attachments.images import TooManyPixels, first_frame_png
from tests import images
from tests.fake_provider import sent
from tests.helpers import ask, assert_envelope
from tests.images import UPLOAD, b64, data_url, image_message, upload

RED = (250, 0, 0)  # the first frame of images.animated()


@pytest.fixture
def app(provider_app):
    return provider_app


def assert_first_frame_png(part: dict) -> None:
    assert part["inlineData"]["mimeType"] == "image/png"
    png = base64.b64decode(part["inlineData"]["data"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (6, 4)
        assert image.convert("RGB").getpixel((3, 2)) == RED


def test_gemini_gets_a_gif_as_a_png_of_its_first_frame(client, ada, fake):
    gif = images.animated("GIF")
    attachment = upload(client, ada, gif)
    response = ask(client, ada, "Describe", model="gemini", attachment_ids=[attachment])
    assert response.status_code == 200, response.json
    [user] = sent(fake)["contents"]
    assert user["parts"][0] == {"text": "Describe"}
    assert_first_frame_png(user["parts"][1])
    # What is stored, and shown, is the GIF as it was uploaded.
    stored = client.get(f"{UPLOAD}/{attachment}", headers=ada)
    assert (stored.data, stored.headers["Content-Type"]) == (gif, "image/gif")
    [session] = client.get("/api/ai_chat/history", headers=ada).json
    assert session["messages"][0]["attachments"][0]["media_type"] == "image/gif"
    # Sent again in context, the GIF goes as a PNG again; other providers get the GIF.
    session = response.json["session_id"]
    assert ask(client, ada, "And now?", model="gemini", session_id=session).status_code == 200
    assert_first_frame_png(sent(fake)["contents"][0]["parts"][1])
    assert ask(client, ada, "You?", model="anthropic", session_id=session).status_code == 200
    assert sent(fake)["messages"][0]["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/gif",
        "data": b64(gif),
    }


def test_v1_gif_data_urls_reach_gemini_as_png(sdk, fake):
    reply = sdk.chat.completions.create(
        model="gemini", messages=image_message(data_url(images.animated("GIF"), "image/gif"))
    )
    assert reply.choices[0].message.content.endswith("I see 1 image(s)")
    assert_first_frame_png(sent(fake)["contents"][-1]["parts"][1])


def test_a_gif_whose_pixels_do_not_decode_is_refused_before_any_call(client, ada, fake):
    gif = bytearray(images.gif((40, 40)))
    start = gif.index(b"\x2c\x00\x00\x00\x00")  # the image descriptor
    # The LZW data's sub-blocks kept whole (the structure holds), their bytes garbage.
    length = gif[start + 11]
    gif[start + 12 : start + 12 + length] = b"\xff" * length
    attachment = upload(client, ada, bytes(gif))
    response = ask(client, ada, "Describe", model="gemini", attachment_ids=[attachment])
    assert_envelope(response, 422)
    assert "GIF" in response.json["message"]
    assert fake.requests == []


def test_the_conversion_is_bounded_by_the_pixel_limit():
    with pytest.raises(TooManyPixels):
        first_frame_png(images.gif((101, 100)), 100 * 100)
    assert first_frame_png(images.gif((100, 100)), 100 * 100).startswith(b"\x89PNG")
