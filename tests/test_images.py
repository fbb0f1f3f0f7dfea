"""Images in chat turns, through the real HTTP API to the fake providers: each provider's own
request format field by field, the native API's attachment_ids, images kept in context, /v1's
image_url parts through the official openai SDK, and the failures."""

import threading

import openai
import pytest

from tests import images
from tests.fake_provider import openai_stream, sent
from tests.helpers import (
    ask,
    assert_envelope,
    in_thread,
    read_events,
    stream,
    wait_for,
)
from tests.images import UPLOAD, b64, image_message, upload
from tests.provider_setup import SYSTEM


@pytest.fixture
def app(provider_app):
    return provider_app


# --- each provider's format, from the native API --------------------------------------------


def test_openai_gets_image_url_parts(client, ada, fake):
    png = images.png()
    ids = [upload(client, ada, png), upload(client, ada, images.jpeg())]
    jpeg_b64 = b64(client.get(f"{UPLOAD}/{ids[1]}", headers=ada).data)
    reply = ask(client, ada, "What is this?", model="openai", attachment_ids=ids)
    assert reply.status_code == 200, reply.json
    assert reply.json["content"].endswith("I see 2 image(s)")
    assert sent(fake)["messages"] == [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(png)}"}},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg_b64}"}},
            ],
        },
    ]


def test_anthropic_gets_base64_sources(client, ada, fake):
    gif = images.gif()
    attachment = upload(client, ada, gif)
    assert (
        ask(client, ada, "Describe", model="anthropic", attachment_ids=[attachment]).status_code
        == 200
    )
    body = sent(fake)
    assert body["system"] == SYSTEM
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/gif", "data": b64(gif)},
                },
            ],
        }
    ]


def test_gemini_gets_inline_data(client, ada, fake):
    webp = images.webp()
    attachment = upload(client, ada, webp)
    assert (
        ask(client, ada, "Describe", model="gemini", attachment_ids=[attachment]).status_code == 200
    )
    assert sent(fake)["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Describe"},
                {"inlineData": {"mimeType": "image/webp", "data": b64(webp)}},
            ],
        }
    ]


def test_ollama_gets_the_messages_images(client, ada, fake):
    png, jpeg = images.png(), images.jpeg()
    ids = [upload(client, ada, png), upload(client, ada, jpeg)]
    assert ask(client, ada, "Describe", model="ollama", attachment_ids=ids).status_code == 200
    assert sent(fake)["messages"][-1] == {
        "role": "user",
        "content": "Describe",
        "images": [b64(png), b64(jpeg)],
    }


def test_deepseek_is_refused_before_any_call_and_nothing_is_stored(client, ada, fake):
    attachment = upload(client, ada, images.png())
    response = ask(client, ada, "Describe", model="deepseek", attachment_ids=[attachment])
    assert_envelope(response, 422)
    assert "deepseek" in response.json["message"] and "image" in response.json["message"]
    assert fake.requests == []
    assert client.get("/api/ai_chat/history", headers=ada).json == []


# --- attachment_ids ----------------------------------------------------------------------------


def test_attachment_ids_are_checked(client, ada, bob, fake):
    mine = upload(client, ada, images.png())
    bobs = upload(client, bob, images.png())
    assert_envelope(ask(client, ada, "x", attachment_ids=[bobs]), 404)
    assert_envelope(ask(client, ada, "x", attachment_ids=[999_999]), 404)
    assert_envelope(ask(client, ada, "x", attachment_ids=[mine, mine]), 422)
    assert_envelope(ask(client, ada, "x", attachment_ids=["1"]), 422)
    assert_envelope(ask(client, ada, "x", attachment_ids=[0]), 422)
    assert_envelope(ask(client, ada, "x", attachment_ids=list(range(1, 1002))), 422)
    assert client.get("/api/ai_chat/history", headers=ada).json == []
    # Used once, it goes with its message: another message cannot take it.
    assert ask(client, ada, "x", attachment_ids=[mine]).status_code == 200
    assert_envelope(ask(client, ada, "y", attachment_ids=[mine]), 409)


def test_at_most_attachments_per_message(make_app, provider_config, auth):
    app = make_app(provider_config | {"ATTACHMENTS_PER_MESSAGE": 2})
    client = app.test_client()
    headers = auth.register(client=client)
    ids = [upload(client, headers, images.png()) for _ in range(3)]
    response = ask(client, headers, "x", attachment_ids=ids)
    assert_envelope(response, 422)
    assert "At most 2" in response.json["message"]
    assert ask(client, headers, "x", attachment_ids=ids[:2]).status_code == 200


def test_messages_show_their_attachments_everywhere(client, ada):
    png = images.png((9, 4))
    attachment = upload(client, ada, png)
    reply = ask(client, ada, "see", attachment_ids=[attachment])
    assert reply.json["attachments"] == []  # the reply's own: none
    shown = [
        {"id": attachment, "media_type": "image/png", "bytes": len(png), "width": 9, "height": 4}
    ]
    chat_id = reply.json["session_id"]
    session = client.get(f"/api/ai_chat/{chat_id}", headers=ada).json
    assert [m["attachments"] for m in session["messages"]] == [shown, []]
    history = client.get("/api/ai_chat/history", headers=ada).json
    assert history[0]["messages"][0]["attachments"] == shown
    export = client.get(f"/api/ai_chat/{chat_id}/export?format=json", headers=ada).json
    assert export["messages"][0]["attachments"] == shown
    everything = client.get("/api/ai_chat/export?format=json", headers=ada).json
    assert everything["sessions"][0]["messages"][0]["attachments"] == shown
    markdown = client.get(f"/api/ai_chat/{chat_id}/export", headers=ada).text
    assert f"attachment {attachment}" in markdown
    # The echo reads the image as the provider would get it.
    assert f"[image: image/png, {len(png)} bytes]" in reply.json["content"]


def test_images_stay_in_context_under_the_budget(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"ATTACHMENT_CONTEXT_IMAGES": 2})
    client = app.test_client()
    headers = auth.register(client=client)
    first = [upload(client, headers, images.png()), upload(client, headers, images.png())]
    chat_id = ask(client, headers, "one", "openai", attachment_ids=first).json["session_id"]
    second = upload(client, headers, images.jpeg())
    ask(client, headers, "two", "openai", session_id=chat_id, attachment_ids=[second])
    ask(client, headers, "three", "openai", session_id=chat_id)
    messages = sent(fake)["messages"]
    kinds = [
        [p["type"] for p in m["content"]] if isinstance(m["content"], list) else "text"
        for m in messages
        if m["role"] == "user"
    ]
    # The newest two images: the second message's one, and the first message's last.
    assert kinds == [["text", "image_url"], ["text", "image_url"], "text"]


def test_a_provider_without_images_gets_the_earlier_images_left_out(client, ada, fake):
    attachment = upload(client, ada, images.png())
    chat_id = ask(client, ada, "one", "openai", attachment_ids=[attachment]).json["session_id"]
    reply = ask(client, ada, "two", "deepseek", session_id=chat_id)
    assert reply.status_code == 200, reply.json
    assert all(isinstance(m["content"], str) for m in sent(fake)["messages"])


def test_edit_replaces_and_regenerate_resends_the_images(client, ada, bob, fake):
    first = upload(client, ada, images.png())
    reply = ask(client, ada, "one", "openai", attachment_ids=[first])
    chat_id = reply.json["session_id"]
    question = client.get(f"/api/ai_chat/{chat_id}", headers=ada).json["messages"][0]["id"]
    again = client.post(f"/api/ai_chat/{chat_id}/regenerate", headers=ada, json={})
    assert again.status_code == 200, again.json
    assert sent(fake)["messages"][-1]["content"][1]["type"] == "image_url"
    url = f"/api/ai_chat/{chat_id}/messages/{question}"
    bobs = upload(client, bob, images.png())
    assert_envelope(
        client.put(url, headers=ada, json={"content": "x", "attachment_ids": [bobs]}), 404
    )
    second = upload(client, ada, images.gif())
    edited = client.put(url, headers=ada, json={"content": "edited", "attachment_ids": [second]})
    assert edited.status_code == 200, edited.json
    assert sent(fake)["messages"][-1]["content"][1]["image_url"]["url"].startswith(
        "data:image/gif;base64,"
    )
    shown = client.get(f"/api/ai_chat/{chat_id}", headers=ada).json["messages"][0]
    assert [a["id"] for a in shown["attachments"]] == [second]
    # Left by the edit, the first image belongs to no message: the sweep takes it (and Bob's,
    # which never went with one).
    swept = client.application.test_cli_runner().invoke(
        args=["attachments", "sweep", "--hours", "0"]
    )
    assert "Deleted 2 unused attachments" in swept.output
    assert_envelope(client.get(f"{UPLOAD}/{first}", headers=ada), 404)
    plain = client.put(url, headers=ada, json={"content": "no images", "attachment_ids": []})
    assert plain.status_code == 200
    assert isinstance(sent(fake)["messages"][-1]["content"], str)


@pytest.mark.parametrize("streamed", [False, True])
def test_regenerate_with_attachment_ids_replaces_the_images_once_it_succeeds(
    client, ada, bob, fake, streamed
):
    first = upload(client, ada, images.png())
    chat_id = ask(client, ada, "one", "openai", attachment_ids=[first]).json["session_id"]
    url = f"/api/ai_chat/{chat_id}/regenerate"
    bobs = upload(client, bob, images.png())
    assert_envelope(client.post(url, headers=ada, json={"attachment_ids": [bobs]}), 404)
    second = upload(client, ada, images.webp())
    # A regenerate that fails changes nothing, the images included.
    fake.reply(status=500, body={"error": {"message": "down"}}, times=3)
    failed = client.post(url, headers=ada, json={"attachment_ids": [second]})
    assert failed.status_code in (502, 503)

    def shown():
        messages = client.get(f"/api/ai_chat/{chat_id}", headers=ada).json["messages"]
        return [a["id"] for a in messages[0]["attachments"]]

    assert shown() == [first]
    response = client.post(url, headers=ada, json={"attachment_ids": [second], "stream": streamed})
    assert response.status_code == 200
    response.get_data()  # a stream is stored as it is read
    assert sent(fake)["messages"][-1]["content"][1]["image_url"]["url"].startswith(
        "data:image/webp;base64,"
    )
    assert shown() == [second]


def test_a_provider_refusing_an_image_is_its_words_and_a_failed_message(client, ada, fake):
    words = "Invalid image: the image exceeds the maximum size for this model."
    fake.reply(status=400, body={"error": {"message": words, "type": "invalid_request_error"}})
    attachment = upload(client, ada, images.png())
    response = ask(client, ada, "see", "openai", attachment_ids=[attachment])
    assert response.status_code == 502
    assert words in response.json["message"]
    [session] = client.get("/api/ai_chat/history", headers=ada).json
    [question] = session["messages"]
    assert question["failed"] is True and words in question["error"]
    assert [a["id"] for a in question["attachments"]] == [attachment]


def test_a_session_deleted_while_a_turn_with_an_image_is_in_flight(client, ada, fake, app):
    attachment = upload(client, ada, images.png())
    chat_id = ask(client, ada, "first", "openai").json["session_id"]
    held = threading.Event()
    fake.reply(hold=held)
    results = {}

    def turn():
        other = app.test_client()
        results["r"] = ask(
            other, ada, "see", "openai", session_id=chat_id, attachment_ids=[attachment]
        )

    thread = threading.Thread(target=turn)
    thread.start()
    while not any(r.body and "see" in str(r.body) for r in list(fake.requests)):
        threading.Event().wait(0.01)
    assert client.delete(f"/api/ai_chat/{chat_id}", headers=ada).status_code == 200
    held.set()
    thread.join(10)
    assert_envelope(results["r"], 404)
    # The image went with no message: an orphan, swept like any other.
    assert client.get(f"{UPLOAD}/{attachment}", headers=ada).status_code == 200
    swept = app.test_cli_runner().invoke(args=["attachments", "sweep", "--hours", "0"])
    assert "Deleted 1 unused attachment" in swept.output


def test_a_stream_with_an_image_whose_session_is_deleted_mid_reply(client, ada, fake, app):
    attachment = upload(client, ada, images.png())
    chat_id = ask(client, ada, "first", "openai").json["session_id"]
    fake.reply(chunks=openai_stream(["one ", "two ", "three"], "gpt-4.1-mini"), gap=0.3)
    finished = in_thread(
        lambda: read_events(
            stream(
                app.test_client(), ada, "openai", "see", chat_id, attachment_ids=[attachment]
            ).get_data(as_text=True)
        )
    )
    # Once the stream began, the question and its image are stored together...
    wait_for(
        lambda: any(
            m["attachments"]
            for m in client.get(f"/api/ai_chat/{chat_id}", headers=ada).json["messages"]
        ),
        what="the question with its image",
    )
    assert client.delete(f"/api/ai_chat/{chat_id}", headers=ada).status_code == 200
    events = finished()
    assert events[0][0] == "start" and events[-1][0] == "error"
    assert events[-1][1]["code"] == 404
    # ...and deleted with it.
    assert_envelope(client.get(f"{UPLOAD}/{attachment}", headers=ada), 404)


# --- /v1, through the official SDK -----------------------------------------------------------


def test_v1_data_urls_reach_anthropic_and_are_stored(sdk, fake, client, ada):
    png = images.png((5, 6))
    reply = sdk.chat.completions.create(
        model="anthropic", messages=image_message(f"data:image/png;base64,{b64(png)}")
    )
    assert reply.choices[0].message.content.endswith("I see 1 image(s)")
    assert sent(fake)["messages"][-1]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": b64(png)},
    }
    [session] = client.get("/api/ai_chat/history", headers=ada).json
    [stored] = session["messages"][0]["attachments"]
    assert (stored["media_type"], stored["bytes"], stored["width"], stored["height"]) == (
        "image/png",
        len(png),
        5,
        6,
    )
    assert client.get(f"{UPLOAD}/{stored['id']}", headers=ada).data == png


def test_v1_https_urls_go_as_urls_to_providers_that_take_them(sdk, fake):
    url = "https://example.com/cat.jpg"
    sdk.chat.completions.create(model="openai", messages=image_message(url, detail="low"))
    assert sent(fake)["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": url, "detail": "low"},
    }
    sdk.chat.completions.create(model="anthropic", messages=image_message(url))
    assert sent(fake)["messages"][-1]["content"][1] == {
        "type": "image",
        "source": {"type": "url", "url": url},
    }


def test_v1_an_https_image_alone_is_a_question(sdk, fake, client, ada):
    url = "https://example.com/cat.jpg"
    alone = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    sdk.chat.completions.create(model="openai", messages=alone)
    assert sent(fake)["messages"][-1]["content"] == [
        {"type": "image_url", "image_url": {"url": url}}
    ]
    [session] = client.get("/api/ai_chat/history", headers=ada).json
    assert [m["is_bot"] for m in session["messages"]] == [False, True]


@pytest.mark.parametrize(
    ("model", "url", "words"),
    [
        ("gemini", "https://example.com/cat.jpg", "inline"),
        ("ollama", "https://example.com/cat.jpg", "inline"),
        ("deepseek", f"data:image/png;base64,{b64(images.png())}", "no image input"),
        ("echo", "data:image/png;base64,not*base64", "base64"),
        ("echo", f"data:image/png;base64,{b64(b'<html><body>hi</body></html>')}", "not a PNG"),
        ("echo", f"data:image/svg+xml;base64,{b64(b'<svg/>')}", "image/svg+xml"),
        ("echo", f"data:text/html;base64,{b64(b'<p>')}", "text/html"),
        ("echo", f"data:image/png;base64,{b64(images.png()[:30])}", "truncated"),
        ("echo", "http://example.com/cat.jpg", "https"),
        ("echo", "file:///etc/passwd", "https"),
    ],
)
def test_v1_images_refused_are_400s_on_messages_before_any_call(sdk, fake, model, url, words):
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model=model, messages=image_message(url))
    assert raised.value.body["param"] == "messages"
    assert words in raised.value.body["message"]
    assert fake.requests == []


def test_v1_a_large_image_fits_in_the_body(sdk, fake):
    data = images.noisy_png(1024 * 1024)
    reply = sdk.chat.completions.create(
        model="openai", messages=image_message(f"data:image/png;base64,{b64(data)}")
    )
    assert reply.choices[0].message.content.endswith("I see 1 image(s)")


def test_v1_a_streamed_completion_with_an_image(sdk, fake):
    chunks = sdk.chat.completions.create(
        model="gemini",
        messages=image_message(f"data:image/webp;base64,{b64(images.webp())}"),
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("I see 1 image(s)")
    assert sent(fake)["contents"][-1]["parts"][1]["inlineData"]["mimeType"] == "image/webp"


def test_v1_images_over_the_quota_are_a_409_before_any_call(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"ATTACHMENT_QUOTA_BYTES": 100})
    client = app.test_client()
    headers = auth.register(client=client)
    url = f"data:image/png;base64,{b64(images.png((40, 40)))}"
    body = {"model": "openai", "messages": image_message(url)}
    response = client.post("/v1/chat/completions", headers=headers, json=body)
    assert response.status_code == 409
    assert "quota" in response.json["error"]["message"]
    assert fake.requests == []
    # Not to be stored, it is not counted.
    unstored = client.post("/v1/chat/completions", headers=headers, json=body | {"store": False})
    assert unstored.status_code == 200
