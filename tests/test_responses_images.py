"""`input_image` parts in Responses input messages, through the official `openai` SDK against a
real HTTP server of the app: each provider's request field by field, the refusals (before any
call, a 400 on `input`), what is stored (the question's attachments, listed as data: URLs by
input_items, sent again by a continuation), store false, the quota, another user's ids."""

import openai
import pytest

from tests import images
from tests.fake_provider import sent
from tests.images import UPLOAD, b64, data_url

HTTPS = "https://example.com/cat.jpg"


@pytest.fixture
def app(provider_app):
    return provider_app


def asking(*urls: str, text="What is this?", **extra) -> list[dict]:
    parts = [{"type": "input_text", "text": text}]
    parts += [{"type": "input_image", "image_url": url, "detail": "auto"} | extra for url in urls]
    return [{"type": "message", "role": "user", "content": parts}]


def attachments_of(client, headers) -> list[list[dict]]:
    return [
        m["attachments"]
        for s in client.get("/api/ai_chat/history", headers=headers).json
        for m in s["messages"]
    ]


# --- each provider's request -----------------------------------------------------------------


def test_openai_gets_image_url_parts(sdk, fake):
    png = images.png()
    input = asking(data_url(png))
    input[0]["content"].append({"type": "input_image", "image_url": HTTPS, "detail": "low"})
    response = sdk.responses.create(model="openai", input=input)
    assert response.status == "completed"
    assert response.output_text.endswith("I see 2 image(s)")
    assert sent(fake)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": data_url(png)}},
                {"type": "image_url", "image_url": {"url": HTTPS, "detail": "low"}},
            ],
        }
    ]


def test_anthropic_gets_base64_and_url_sources(sdk, fake):
    gif = images.gif()
    sdk.responses.create(
        model="anthropic", input=asking(data_url(gif, "image/gif"), HTTPS), instructions="Be brief"
    )
    body = sent(fake)
    assert body["system"] == "Be brief"
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/gif", "data": b64(gif)},
                },
                {"type": "image", "source": {"type": "url", "url": HTTPS}},
            ],
        }
    ]


def test_gemini_gets_inline_data(sdk, fake):
    webp = images.webp()
    sdk.responses.create(model="gemini", input=asking(data_url(webp, "image/webp")))
    assert sent(fake)["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/webp", "data": b64(webp)}},
            ],
        }
    ]


def test_ollama_gets_the_messages_images(sdk, fake):
    png, jpeg = images.png(), images.jpeg()
    sdk.responses.create(
        model="ollama", input=asking(data_url(png), data_url(jpeg, "image/jpeg"), text="Describe")
    )
    assert sent(fake)["messages"] == [
        {"role": "user", "content": "Describe", "images": [b64(png), b64(jpeg)]}
    ]


def test_a_streamed_response_with_an_image(sdk, fake):
    with sdk.responses.stream(
        model="gemini", input=asking(data_url(images.webp(), "image/webp"))
    ) as events:
        final = events.get_final_response()
    assert final.output_text.endswith("I see 1 image(s)")
    assert sent(fake)["contents"][-1]["parts"][1]["inlineData"]["mimeType"] == "image/webp"


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "part", "words"),
    [
        ("deepseek", {"image_url": data_url(images.png())}, "no image input"),
        ("gemini", {"image_url": HTTPS}, "inline"),
        ("ollama", {"image_url": HTTPS}, "inline"),
        ("echo", {"image_url": "data:image/png;base64,not*base64"}, "base64"),
        ("echo", {"image_url": data_url(b"<html><body>hi</body></html>")}, "not a PNG"),
        ("echo", {"image_url": data_url(b"<svg/>", "image/svg+xml")}, "image/svg+xml"),
        ("echo", {"image_url": data_url(images.png()[:30])}, "truncated"),
        ("echo", {"image_url": "http://example.com/cat.jpg"}, "https"),
        ("echo", {"image_url": "file:///etc/passwd"}, "https"),
        ("echo", {"file_id": "file-abc123"}, "file_id"),
        ("echo", {}, "image_url is required"),
        ("echo", {"image_url": HTTPS, "detail": "huge"}, "detail"),
    ],
)
def test_images_refused_are_400s_on_input_before_any_call(
    sdk, fake, client, ada, model, part, words
):
    content = [{"type": "input_text", "text": "What?"}, {"type": "input_image"} | part]
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model=model, input=[{"role": "user", "content": content}])
    assert raised.value.body["param"] == "input"
    assert words in raised.value.body["message"]
    # PolyGenix's own checks name the part; a provider's refusal names the provider.
    assert (model if model != "echo" else "input[0].content[1]") in raised.value.body["message"]
    assert fake.requests == []
    assert client.get("/api/ai_chat/history", headers=ada).json == []


def test_only_a_user_message_takes_images(sdk, fake):
    image = {"type": "input_image", "image_url": HTTPS, "detail": "auto"}
    for role in ("assistant", "system", "developer"):
        with pytest.raises(openai.BadRequestError) as raised:
            sdk.responses.create(
                model="echo",
                input=[{"role": role, "content": [image]}, {"role": "user", "content": "Hi"}],
            )
        assert raised.value.body["param"] == "input"
    assert fake.requests == []


def test_at_most_attachments_per_message(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"ATTACHMENTS_PER_MESSAGE": 2})
    client = app.test_client()
    headers = auth.register(client=client)
    body = {"model": "openai", "input": asking(HTTPS, HTTPS, HTTPS)}
    response = client.post("/v1/responses", headers=headers, json=body)
    assert response.status_code == 400
    assert response.json["error"]["param"] == "input"
    assert "at most 2 images" in response.json["error"]["message"]
    body["input"] = asking(HTTPS, HTTPS)
    assert client.post("/v1/responses", headers=headers, json=body).status_code == 200


def test_an_image_counts_in_the_size_checks(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"CONTEXT_MAX_CHARS": 5000})
    client = app.test_client()
    headers = auth.register(client=client)
    text = "x" * 1000
    body = {"model": "openai", "input": asking(HTTPS, text=text)}
    response = client.post("/v1/responses", headers=headers, json=body)
    assert response.status_code == 400
    assert response.json["error"]["param"] == "input"
    assert "5000 characters" in response.json["error"]["message"]
    assert fake.requests == []
    body["input"] = [{"role": "user", "content": text}]
    assert client.post("/v1/responses", headers=headers, json=body).status_code == 200


def test_an_image_alone_is_a_question_and_blank_text_alone_is_not(sdk, fake):
    image = {"type": "input_image", "image_url": data_url(images.png()), "detail": "auto"}
    for part in (image, image | {"image_url": HTTPS}):
        only = [{"role": "user", "content": [part]}]
        assert sdk.responses.create(model="openai", input=only).status == "completed"
    assert sent(fake)["messages"][-1]["content"][0]["image_url"]["url"] == HTTPS
    blank = [{"role": "user", "content": [{"type": "input_text", "text": "  "}]}]
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="openai", input=blank)
    assert raised.value.body["param"] == "input"


# --- what is stored --------------------------------------------------------------------------


def test_inline_images_are_the_questions_attachments_and_listed_as_data_urls(
    sdk, fake, client, ada
):
    png = images.png((5, 6))
    response = sdk.responses.create(model="anthropic", input=asking(data_url(png), HTTPS))
    [[stored], []] = attachments_of(client, ada)
    assert (stored["media_type"], stored["bytes"], stored["width"], stored["height"]) == (
        "image/png",
        len(png),
        5,
        6,
    )
    assert client.get(f"{UPLOAD}/{stored['id']}", headers=ada).data == png
    [item] = sdk.responses.input_items.list(response.id).data
    assert item.type == "message" and item.role == "user"
    assert [(p.type, getattr(p, "image_url", None)) for p in item.content] == [
        ("input_text", None),
        ("input_image", data_url(png)),
        ("input_image", HTTPS),
    ]
    assert [getattr(p, "detail", None) for p in item.content] == [None, "auto", "auto"]


def test_a_continuation_sends_the_stored_image_again(sdk, fake):
    png = images.png()
    first = sdk.responses.create(model="openai", input=asking(data_url(png)))
    sdk.responses.create(model="openai", input="And its colour?", previous_response_id=first.id)
    messages = sent(fake)["messages"]
    assert messages[0] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": data_url(png)}},
        ],
    }
    assert messages[1]["role"] == "assistant"
    assert messages[2] == {"role": "user", "content": "And its colour?"}
    # Continued on a provider that takes images from bytes only: the stored bytes go.
    sdk.responses.create(model="gemini", input="Again?", previous_response_id=first.id)
    assert sent(fake)["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": b64(png)}
    }


def test_a_provider_without_images_is_sent_the_chains_text_alone(sdk, fake):
    first = sdk.responses.create(model="openai", input=asking(data_url(images.png())))
    sdk.responses.create(model="deepseek", input="And now?", previous_response_id=first.id)
    assert sent(fake)["messages"][0] == {"role": "user", "content": "What is this?"}
    # The new input's own image stays refused.
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(
            model="deepseek", input=asking(data_url(images.png())), previous_response_id=first.id
        )
    assert raised.value.body["param"] == "input"


def test_a_continuation_sends_no_image_over_the_context_images(
    make_app, provider_config, auth, fake
):
    app = make_app(provider_config | {"ATTACHMENT_CONTEXT_IMAGES": 0})
    client = app.test_client()
    headers = auth.register(client=client)
    body = {"model": "openai", "input": asking(data_url(images.png()))}
    first = client.post("/v1/responses", headers=headers, json=body).json
    body = {"model": "openai", "input": "Again", "previous_response_id": first["id"]}
    assert client.post("/v1/responses", headers=headers, json=body).status_code == 200
    assert sent(fake)["messages"][0] == {"role": "user", "content": "What is this?"}


def test_an_earlier_messages_inline_image_is_sent_not_stored(sdk, fake, client, ada):
    png = images.png()
    input = asking(data_url(png), text="First") + [{"role": "user", "content": "Second"}]
    response = sdk.responses.create(model="openai", input=input)
    assert sent(fake)["messages"][0]["content"][1]["image_url"]["url"] == data_url(png)
    assert all(a == [] for a in attachments_of(client, ada))
    items = sdk.responses.input_items.list(response.id, order="asc").data
    assert items[0].content[1].type == "input_image" and items[0].content[1].image_url is None


def test_store_false_keeps_nothing(sdk, fake, client, ada):
    response = sdk.responses.create(
        model="openai", input=asking(data_url(images.png())), store=False
    )
    assert response.output_text.endswith("I see 1 image(s)")
    assert client.get("/api/ai_chat/history", headers=ada).json == []
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)


def test_over_the_quota_is_a_409_before_any_call(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"ATTACHMENT_QUOTA_BYTES": 100})
    client = app.test_client()
    headers = auth.register(client=client)
    body = {"model": "openai", "input": asking(data_url(images.png((40, 40))))}
    response = client.post("/v1/responses", headers=headers, json=body)
    assert response.status_code == 409
    error = response.json["error"]
    assert "quota" in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert fake.requests == []
    assert client.get("/api/ai_chat/history", headers=headers).json == []
    # Not to be stored, it is not counted.
    unstored = client.post("/v1/responses", headers=headers, json=body | {"store": False})
    assert unstored.status_code == 200


def test_another_users_images_are_never_visible(sdk, bob_sdk, fake, client, ada, bob):
    png = images.png((7, 7))
    mine = sdk.responses.create(model="openai", input=asking(data_url(png)))
    [[stored], []] = attachments_of(client, ada)
    with pytest.raises(openai.NotFoundError):
        bob_sdk.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob_sdk.responses.retrieve(mine.id)
    with pytest.raises(openai.BadRequestError) as raised:
        bob_sdk.responses.create(model="openai", input="Show me", previous_response_id=mine.id)
    assert raised.value.body["param"] == "previous_response_id"
    assert client.get(f"{UPLOAD}/{stored['id']}", headers=bob).status_code == 404
    # Bob's own chain never holds Ada's image.
    own = bob_sdk.responses.create(model="openai", input="Hello")
    bob_sdk.responses.create(model="openai", input="Again", previous_response_id=own.id)
    assert b64(png) not in str(sent(fake))


def test_deleting_the_response_deletes_its_images(sdk, fake, client, ada):
    response = sdk.responses.create(model="openai", input=asking(data_url(images.png())))
    [[stored], []] = attachments_of(client, ada)
    sdk.responses.delete(response.id)
    assert client.get(f"{UPLOAD}/{stored['id']}", headers=ada).status_code == 404
