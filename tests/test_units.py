"""Pure pieces tested directly: titles, model names, the echo model, context building."""

import pytest

from polygenix.chat.turn import load_context, make_title
from polygenix.extensions import db
from polygenix.models import ChatSession, Message, User
from polygenix.providers import UnknownModelError, build_registry

# Nothing configured: every provider as it comes.
REGISTRY = build_registry({}, {}, {})
echo = REGISTRY["echo"]


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("hello", "hello"),
        ("  many   spaces\nand lines ", "many spaces and lines"),
        ("x" * 60, "x" * 60),
        ("x" * 61, "x" * 59 + "…"),
        ("word " * 20, "word word word word word word word word word word word…"),
        ("a" * 30 + " " + "b" * 40, "a" * 30 + "…"),
        ("commas, after, every, word, so, the, cut, lands, on, one, of, them, ok", None),
    ],
)
def test_make_title(text, title):
    result = make_title(text)
    assert len(result) <= 60
    if title is not None:
        assert result == title
    else:
        assert not result[:-1].endswith(",") and result.endswith("…")


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("echo", "echo"),
        (" Echo ", "echo"),
        ("ECHO/x", "x"),
        ("echo/a/b:c", "a/b:c"),
        ("echo/", "echo"),
    ],
)
def test_resolve(name, model):
    provider, resolved = REGISTRY.resolve(name)
    assert provider is echo and resolved == model


@pytest.mark.parametrize("name", ["", "gpt-17", "echoes", "/echo", "echo x"])
def test_resolve_unknown(name):
    with pytest.raises(UnknownModelError, match=r"Available models: echo/echo, ollama/llama3.2$"):
        REGISTRY.resolve(name)


def test_echo_is_deterministic_and_counts_words():
    messages = [
        {"role": "user", "content": "one two"},
        {"role": "assistant", "content": "three"},
        {"role": "user", "content": "four five six"},
    ]
    completion = echo.complete(messages, "echo")
    assert completion.content == "Echo: four five six"
    assert completion.prompt_tokens == 6 and completion.completion_tokens == 4
    assert completion.finish_reason == "stop"
    assert echo.complete(messages, "echo") == completion


def empty_session() -> ChatSession:
    user = User(name="u", email="u@example.com", password_hash="x")
    db.session.add(user)
    db.session.flush()
    session = ChatSession(user_id=user.id, number=1, title="t")
    db.session.add(session)
    db.session.flush()
    return session


def test_load_context_pairs_turns_and_respects_limits(app):
    with app.app_context():
        session = empty_session()
        rows = [
            (False, "u1"),
            (True, "a1"),
            (False, "lost"),  # its provider call failed: no reply follows
            (False, "u2"),
            (True, "a2"),
            (False, "u3"),
            (True, "a3"),
        ]
        question = None
        for is_bot, content in rows:
            message = Message(
                session_id=session.id,
                is_bot=is_bot,
                content=content,
                reply_to_id=question.id if is_bot else None,
            )
            db.session.add(message)
            db.session.flush()
            question = None if is_bot else message
        config = {"CONTEXT_MAX_MESSAGES": 50, "CONTEXT_MAX_CHARS": 1000}
        assert [m["content"] for m in load_context(session.id, config, 0)] == [
            "u1",
            "a1",
            "u2",
            "a2",
            "u3",
            "a3",
        ]
        roles = [m["role"] for m in load_context(session.id, config, 0)]
        assert roles == ["user", "assistant"] * 3
        # The message limit bounds the query; the character budget keeps the newest turns.
        assert [
            m["content"] for m in load_context(session.id, config | {"CONTEXT_MAX_MESSAGES": 3}, 0)
        ] == ["u3", "a3"]
        assert [
            m["content"] for m in load_context(session.id, config | {"CONTEXT_MAX_CHARS": 9}, 4)
        ] == ["u3", "a3"]
        assert load_context(session.id, config | {"CONTEXT_MAX_CHARS": 5}, 4) == []


def test_load_context_pairs_overlapping_turns_by_reply_to(app):
    """Two requests to one session overlap: q1, q2, then r1 and r2 land. Pairs stay right."""
    with app.app_context():
        session = empty_session()
        q1 = Message(session_id=session.id, is_bot=False, content="q1")
        q2 = Message(session_id=session.id, is_bot=False, content="q2")
        db.session.add_all([q1, q2])
        db.session.flush()
        db.session.add_all(
            [
                Message(session_id=session.id, is_bot=True, content="r2", reply_to_id=q2.id),
                Message(session_id=session.id, is_bot=True, content="r1", reply_to_id=q1.id),
            ]
        )
        db.session.flush()
        config = {"CONTEXT_MAX_MESSAGES": 50, "CONTEXT_MAX_CHARS": 1000}
        assert [(m["role"], m["content"]) for m in load_context(session.id, config, 0)] == [
            ("user", "q1"),
            ("assistant", "r1"),
            ("user", "q2"),
            ("assistant", "r2"),
        ]


def test_a_json_body_with_base64_is_the_bytes_json_dumps_makes():
    import json

    from polygenix.providers.jsonbody import encode, inline
    from polygenix.providers.messages import base64_source

    source = base64_source("image/png", bytes(range(256)) * 5)
    text = source["data"].decode()
    assert source == {"type": "base64", "media_type": "image/png", "data": text.encode()}

    def payload(image_url, inline_data):
        return {
            "model": "m",
            "messages": [
                # Text that looks like a placeholder, quotes and non-ASCII are escaped as ever.
                {"role": "user", "content": 'b64-0 "quoted" é \u2028 \x00 b64-'},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": image_url}},
                        {"inlineData": {"mimeType": "image/png", "data": inline_data}},
                        {"type": "text", "text": text},
                    ],
                },
            ],
            "temperature": 0.5,
            "stop": None,
        }

    expected = json.dumps(payload("data:image/png;base64," + text, text)).encode()
    body = encode(payload(inline(source, "data:image/png;base64,"), inline(source)))
    assert len(body) == len(expected)
    assert bytes(body) == expected
    assert encode({"messages": []}) == b'{"messages": []}'
    with pytest.raises(ValueError):
        encode({"temperature": float("nan")})
    with pytest.raises(TypeError):
        encode({"x": object()})
