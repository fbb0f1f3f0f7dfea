"""A /v1 request's inline image (a data: URL), through the real HTTP API to the fake providers:
the body each provider receives is, byte for byte, the JSON `json.dumps` makes of it, the
client's base64 in it exactly as the client sent it, from Chat Completions, from Responses and
from a stored response's continuation (the image sent again from its stored bytes)."""

import base64
import json

import pytest

from polygenix.openai_api import responses_schema, schemas
from tests import images

# Noisy: its base64 holds "+" and "/" (JSON escapes neither); the text beside it is escaped.
PNG = images.noisy_png(48 * 1024)
B64 = base64.b64encode(PNG).decode()
URL = f"data:image/png;base64,{B64}"
TEXT = 'What is "this"? é \u2028'
# How each wire format carries the image, as json.dumps writes it.
CARRIED = {
    "openai": f'"image_url": {{"url": "{URL}"}}',
    "anthropic": f'"source": {{"type": "base64", "media_type": "image/png", "data": "{B64}"}}',
    "gemini": f'"inlineData": {{"mimeType": "image/png", "data": "{B64}"}}',
}


@pytest.fixture
def app(provider_app):
    return provider_app


def received(fake, model: str) -> bytes:
    """The last body the provider received, checked to be the bytes json.dumps makes of it
    and to carry the image once, as the client sent it."""
    raw = fake.requests[-1].raw
    assert raw == json.dumps(json.loads(raw)).encode()
    assert raw.count(B64.encode()) == 1
    assert CARRIED[model].encode() in raw
    return raw


def chat_message() -> list[dict]:
    parts = [{"type": "text", "text": TEXT}, {"type": "image_url", "image_url": {"url": URL}}]
    return [{"role": "user", "content": parts}]


def input_message() -> list[dict]:
    parts = [{"type": "input_text", "text": TEXT}, {"type": "input_image", "image_url": URL}]
    return [{"type": "message", "role": "user", "content": parts}]


@pytest.mark.parametrize("model", ["openai", "anthropic", "gemini"])
def test_chat_completions_send_the_clients_base64_as_it_is(sdk, fake, model):
    reply = sdk.chat.completions.create(model=model, messages=chat_message())
    assert reply.choices[0].message.content.endswith("I see 1 image(s)")
    assert b'"What is \\"this\\"? \\u00e9 \\u2028"' in received(fake, model)


@pytest.mark.parametrize("model", ["openai", "anthropic", "gemini"])
def test_a_streamed_chat_completion_sends_it_as_it_is(sdk, fake, model):
    chunks = sdk.chat.completions.create(model=model, messages=chat_message(), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    received(fake, model)


@pytest.mark.parametrize("model", ["openai", "anthropic", "gemini"])
def test_responses_send_the_clients_base64_as_it_is(sdk, fake, model):
    response = sdk.responses.create(model=model, input=input_message())
    assert response.output_text.endswith("I see 1 image(s)")
    received(fake, model)


@pytest.mark.parametrize("model", ["openai", "anthropic", "gemini"])
def test_a_continuation_sends_the_stored_image_as_it_was_sent(sdk, fake, model):
    first = sdk.responses.create(model="echo", input=input_message())
    sdk.responses.create(model=model, input="And its colour?", previous_response_id=first.id)
    received(fake, model)
    # The client sends the image again with its next question: both go, each as it is.
    sdk.responses.create(model=model, input=input_message(), previous_response_id=first.id)
    raw = fake.requests[-1].raw
    assert raw == json.dumps(json.loads(raw)).encode()
    assert raw.count(CARRIED[model].encode()) == 2


def test_the_parsed_image_source_keeps_the_clients_base64_bytes(app):
    with app.app_context():
        chat = schemas.parse({"model": "openai", "messages": chat_message()})
        responses = responses_schema.parse({"model": "openai", "input": input_message()}, None)
    for message in (chat.messages[-1], responses.messages[-1]):
        source = message["content"][1]["source"]
        assert source == {"type": "base64", "media_type": "image/png", "data": B64.encode()}
