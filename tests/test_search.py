"""GET /api/ai_chat/search: the caller's own messages and titles, best first, on both engines.

The echo model answers "Echo: <the question>", so each turn adds two messages with the words,
and a new session is titled with its first question.
"""

import json

import pytest
from sqlalchemy import func, select, update

from polygenix.chat.search import EmptyQuery, fts5_query, parse, search
from polygenix.extensions import db
from polygenix.models import Message, utcnow
from tests.helpers import TEST_DATABASE_URL, ask, assert_envelope
from tests.test_migrations import empty_app  # noqa: F401  (fixture)

SEARCH = "/api/ai_chat/search"
POSTGRES = bool(TEST_DATABASE_URL)


def find(client, headers, q, **params):
    response = client.get(SEARCH, headers=headers, query_string={"q": q} | params)
    assert response.status_code == 200, response.json
    return response.json


def messages(client, headers, q):
    """The contents of the messages found (title matches left out), best first."""
    return [r["snippet"] for r in find(client, headers, q) if r["message_id"] is not None]


def plain(snippet: str) -> str:
    return snippet.replace("<mark>", "").replace("</mark>", "")


def fts_rows(app, table="messages_fts") -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(db.table(table)))


@pytest.fixture
def notes(client, ada):
    """Three sessions of Ada's, one question each."""
    for text in ["fresh apples and pears", "apples beside ripe pears", "red cherries"]:
        assert ask(client, ada, text).status_code == 200


def test_a_match_in_a_message_and_in_its_title(client, ada):
    ask(client, ada, "The quick brown fox jumps", session_id=3)
    results = find(client, ada, "fox")
    session = client.get("/api/ai_chat/3", headers=ada).json
    question, reply = session["messages"]
    by_id = {r["message_id"]: r for r in results}
    assert set(by_id) == {question["id"], reply["id"], None}
    assert by_id[question["id"]] == {
        "chat_id": 3,
        "title": "The quick brown fox jumps",
        "message_id": question["id"],
        "is_bot": False,
        "snippet": "The quick brown <mark>fox</mark> jumps",
        "timestamp": question["timestamp"],
    }
    assert by_id[reply["id"]]["is_bot"] is True
    title = by_id[None]
    assert title["is_bot"] is None and title["timestamp"] == session["created_at"]
    assert title["snippet"] == "The quick brown <mark>fox</mark> jumps"


def test_words_match_in_any_form_and_all_must_be_present(client, ada):
    ask(client, ada, "she was running quickly")
    assert len(messages(client, ada, "runs")) == 2
    assert "<mark>running</mark>" in messages(client, ada, "runs")[0]
    assert messages(client, ada, "runs slowly") == []


@pytest.mark.parametrize(
    ("q", "found"),
    [
        ('"fresh apples"', {"fresh apples and pears"}),
        ('"apples fresh"', set()),
        ("apples -ripe", {"fresh apples and pears"}),
        ('apples -"ripe pears"', {"fresh apples and pears"}),
        ("cherries or ripe", {"apples beside ripe pears", "red cherries"}),
        ("cherries OR ripe", {"apples beside ripe pears", "red cherries"}),
        ("pears", {"fresh apples and pears", "apples beside ripe pears"}),
        ("pears cherries", set()),
        ("-pears", set()),  # excluding alone finds nothing
    ],
)
def test_query_operators(client, ada, notes, q, found):
    results = find(client, ada, q)
    questions = {plain(r["snippet"]) for r in results if r["is_bot"] is False}
    assert questions == found
    assert {r["title"] for r in results} == found


def test_best_match_first(client, ada):
    ask(client, ada, "lemon tart recipe with sugar")
    ask(client, ada, "lemon lemon lemon lemon cake")
    first = find(client, ada, "lemon")[0]
    assert "lemon lemon" in plain(first["snippet"])


def test_results_are_only_the_callers_own(client, ada, bob):
    ask(client, ada, "my secret zebra")
    ask(client, bob, "an ordinary day")
    assert find(client, bob, "zebra") == []
    assert find(client, bob, "ordinary") != []
    assert all(r["title"] == "my secret zebra" for r in find(client, ada, "zebra"))


def test_snippets_are_escaped_html(client, ada):
    ask(client, ada, 'look <script>alert("x")</script> & <b>bold</b>')
    for result in messages(client, ada, "look bold"):
        assert "<script>" not in result and "<b>" not in result
        assert "&lt;script&gt;" in result and "&amp;" in result and "&quot;x&quot;" in result
        assert "<mark>look</mark>" in result and "<mark>bold</mark>" in result


def test_a_long_message_gives_a_short_snippet_around_the_match(client, ada):
    ask(client, ada, "filler " * 300 + "needle " + "filler " * 300)
    (snippet, *_) = messages(client, ada, "needle")
    assert "<mark>needle</mark>" in snippet and len(snippet) < 300


def test_renaming_a_session_reindexes_its_title(client, ada):
    ask(client, ada, "first question", session_id=1)
    client.patch("/api/ai_chat/1", headers=ada, json={"title": "Holiday planning"})
    assert [r["title"] for r in find(client, ada, "holiday")] == ["Holiday planning"]
    assert [r["message_id"] for r in find(client, ada, "holiday")] == [None]
    assert all(r["message_id"] is not None for r in find(client, ada, "first"))


def test_superseded_messages_and_unfinished_replies_are_not_found(app, client, ada):
    ask(client, ada, "walrus facts", session_id=1)
    ask(client, ada, "walrus tusks", session_id=1)
    with app.app_context():
        db.session.execute(
            update(Message).where(Message.content.like("%facts%")).values(superseded=True)
        )
        db.session.execute(
            update(Message)
            .where(Message.content == "Echo: walrus tusks")
            .values(lease_until=utcnow())
        )
        db.session.commit()
    assert messages(client, ada, "walrus") == ["<mark>walrus</mark> tusks"]


def test_a_deleted_session_leaves_the_index(app, client, ada):
    ask(client, ada, "octopus arms", session_id=1)
    ask(client, ada, "something else", session_id=2)
    if not POSTGRES:
        assert fts_rows(app) == 4 and fts_rows(app, "chat_sessions_fts") == 2
    assert client.delete("/api/ai_chat/1", headers=ada).status_code == 200
    assert find(client, ada, "octopus") == []
    if not POSTGRES:
        assert fts_rows(app) == 2 and fts_rows(app, "chat_sessions_fts") == 1
    assert len(find(client, ada, "something")) == 3


def test_a_deleted_user_leaves_the_index(app, client, auth, ada, bob):
    ask(client, ada, "penguin colony")
    ask(client, bob, "penguin colony")
    assert client.delete(f"/api/user/{auth.user_id(ada)}", headers=ada).status_code == 200
    if not POSTGRES:
        assert fts_rows(app) == 2 and fts_rows(app, "chat_sessions_fts") == 1
    assert len(find(client, bob, "penguin")) == 3


def test_results_are_paginated(client, ada):
    for n in range(5):
        ask(client, ada, f"kiwi number {n}")
    response = client.get(SEARCH, headers=ada, query_string={"q": "kiwi", "page_size": 4})
    assert len(response.json) == 4
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 15 and pagination["total_pages"] == 4
    pages = [find(client, ada, "kiwi", page=page, page_size=4) for page in (1, 2, 3, 4)]
    seen = [(r["chat_id"], r["message_id"]) for page in pages for r in page]
    assert len(seen) == len(set(seen)) == 15
    assert find(client, ada, "kiwi", page=9) == []
    assert len(find(client, ada, "kiwi")) == 15  # default page_size 20
    too_big = client.get(SEARCH, headers=ada, query_string={"q": "kiwi", "page_size": 101})
    assert_envelope(too_big, 422)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": " \t "}, "blank"),
        ({"q": "?!.,;"}, "Nothing to search for"),
        ({"q": "-"}, "Nothing to search for"),
        ({"q": '""'}, "Nothing to search for"),
        ({"q": "_ * ^ :"}, "Nothing to search for"),
        ({"q": "word " * 100 + "x"}, "at most 500 characters"),
        ({"q": "x" * 10_000}, "at most 500 characters"),
    ],
)
def test_a_query_with_nothing_to_search_for_is_a_422(client, ada, params, message):
    response = client.get(SEARCH, headers=ada, query_string=params)
    body = assert_envelope(response, 422, message)
    assert "q" in body["errors"]["query"]


def test_a_nul_in_the_query_is_a_400(client, ada):
    assert_envelope(client.get(SEARCH + "?q=a%00b", headers=ada), 400)


@pytest.mark.parametrize(
    "q",
    [
        "NEAR(a b)",
        "NEAR(apples pears)",
        "a*",
        "apples*",
        "^apples",
        "content:x",
        "content:apples",
        "{content}: apples",
        '"unbalanced',
        'apples "pears',
        "or or or",
        "apples or",
        "or apples",
        "- - apples -",
        "apples AND NOT pears",
        "(apples",
        "apples) + (",
        "'; DROP TABLE messages; --",
        "x <-> y & !z | w:*",
        "\U0001f600 apples",
        "é" * 500,
    ],
)
def test_hostile_queries_are_answered(client, ada, notes, q):
    results = find(client, ada, q)
    assert isinstance(results, list)


def test_fts5_syntax_typed_by_a_user_is_text(client, ada, notes):
    assert len(messages(client, ada, "apples*")) == 4  # the word apples, not a prefix
    assert messages(client, ada, "NEAR(apples cherries)") == []  # near, apples, cherries
    assert messages(client, ada, "content:cherries") == []  # the words content and cherries


def test_surrogates_in_the_url_are_not_an_error(client, ada, notes):
    # Percent-encoded UTF-16 surrogates decode to replacement characters.
    response = client.get(SEARCH + "?q=%ED%A0%80apples", headers=ada)
    assert response.status_code == 200


def test_only_stop_words(client, ada):
    ask(client, ada, "the and of")
    results = find(client, ada, "the")
    if POSTGRES:
        assert results == []  # English stop-words are not indexed
    else:
        assert len(results) == 3


def test_an_api_key_may_search(client, ada):
    ask(client, ada, "key search works")
    key = client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    assert len(find(client, {"Authorization": f"Bearer {key}"}, "works")) == 3


def test_the_query_language_in_fts5():
    assert fts5_query(parse('a "b c" or d -e -"f g" NEAR(h*')) == (
        '(("a") AND ("b c" OR "d") AND ("NEAR h")) NOT ("e" OR "f g")'
    )
    assert (
        fts5_query(parse('content:x "unclosed phrase')) == '("content x") AND ("unclosed phrase")'
    )
    assert parse("-x").groups == []
    with pytest.raises(EmptyQuery):
        parse(' "" - * ')


def test_migration_indexes_existing_rows(empty_app):  # noqa: F811
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "0012"]).exit_code == 0
    with empty_app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, email, name, password_hash, is_admin, token_key, "
            "created_at) VALUES (1, 'old@b.co', 'Old', 'x', false, 'k', '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO chat_sessions (id, user_id, number, title, created_at, updated_at, "
            "changed_at) VALUES (1, 1, 7, 'Archived giraffe', '2026-01-01 00:00:00', "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO messages (id, session_id, is_bot, content, created_at, incomplete, "
            "superseded) VALUES (1, 1, false, 'an old giraffe story', '2026-01-01 00:00:00', "
            "false, false)"
        )
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with empty_app.app_context():
        total, results = search(1, "giraffes", 1, 20)
    assert total == 2
    assert {(r["chat_id"], r["message_id"]) for r in results} == {(7, 1), (7, None)}
    assert runner.invoke(args=["db", "downgrade", "0012"]).exit_code == 0
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0


def search_objects(app) -> list[tuple[str, str]]:
    """Each search object's definition, as the database reports it."""
    with app.app_context(), db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE name LIKE '%fts%' ORDER BY name"
            )
        else:
            rows = connection.exec_driver_sql(
                "SELECT table_name, generation_expression FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND column_name = 'search_vector' "
                "UNION ALL SELECT indexname, regexp_replace(indexdef, ' ON \\S+\\.', ' ON ') "
                "FROM pg_indexes WHERE schemaname = current_schema() "
                "AND strpos(indexdef, 'gin (search_vector)') > 0 ORDER BY 1"
            )
        return [tuple(row) for row in rows]


def test_create_all_and_the_migration_make_the_same_search_objects(app, empty_app):  # noqa: F811
    assert empty_app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    made = search_objects(app)
    # Each indexed table's column and index; or FTS5 table, its 4 shadow tables, 3 triggers.
    assert len(made) == (4 if POSTGRES else 16)
    assert search_objects(empty_app) == made
