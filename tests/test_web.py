"""The web chat's flows in a real browser: accounts, chatting, sessions, search, settings, usage.

Every test runs on each of the suite's configurations (SQLite; PostgreSQL without and with
Redis). Model output comes from the echo model or the fake provider server.
"""

import io
import json
import re
import time
import zipfile

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from polygenix.attachments.models import Attachment
from polygenix.extensions import db
from polygenix.models import ChatSession, Message, User
from polygenix.user.service import create_user
from tests import images
from tests.fake_provider import openai_stream
from tests.helpers import OPENAI, PASSWORD, bearer, wait_for

pytestmark = pytest.mark.slow


def api_login(base, tab, email="ada@example.com", password=PASSWORD):
    """Headers of another login of the same account, made over HTTP beside the page."""
    response = tab.context.request.post(
        base + "/api/auth/login", form={"username": email, "password": password}
    )
    assert response.ok, response.text()
    return bearer(response.json()["access_token"])


def seed_chat(app, number, title, texts):
    """A chat of the only user, its messages alternating question and reply, written straight
    to the database (faster than through the page)."""
    with app.app_context():
        user = db.session.scalar(select(User))
        session = ChatSession(user_id=user.id, number=number, title=title)
        db.session.add(session)
        db.session.flush()
        db.session.add_all(
            Message(session_id=session.id, is_bot=n % 2 == 1, content=text)
            for n, text in enumerate(texts)
        )
        db.session.commit()


# --- accounts ------------------------------------------------------------------------------


def test_sign_up_reload_log_out_and_log_in(site, tabs):
    base, _ = site()
    page = tabs(base).open()
    expect(page.role("heading", "Log in")).to_be_visible()
    page.shot("01-log-in")
    page.sign_up()
    expect(page.role("navigation", "Chats")).to_be_visible()
    expect(page.role("link", "Settings")).to_be_visible()
    expect(page.role("link", "Usage")).to_be_visible()
    page.send("hello there")
    expect(page.messages()).to_have_count(2)
    # The login survives a reload: the refresh token is in its cookie, the access token is not
    # kept anywhere a reload would find it.
    page.reload()
    expect(page.chats()).to_have_count(1)
    stored = page.evaluate(
        "JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
    )
    assert "eyJ" not in stored and "cookie" not in page.evaluate("document.cookie")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert (
        cookies["polygenix_refresh"]["httpOnly"]
        and cookies["polygenix_refresh"]["sameSite"] == "Strict"
    )
    page.button("Log out").click()
    expect(page.button("Log in")).to_be_visible()
    assert "polygenix_refresh" not in {c["name"] for c in page.context.cookies()}
    page.reload()
    expect(page.button("Log in")).to_be_visible()
    page.log_in()
    expect(page.chats()).to_have_count(1)
    page.assert_quiet()


def test_bad_credentials_and_sign_up_errors_are_shown(site, tabs):
    base, _ = site()
    page = tabs(base).open()
    page.textbox("Email").fill("nobody@example.com")
    page.textbox("Password").fill("wrong password here")
    page.button("Log in").click()
    expect(page.get_by_role("alert").filter(has_text="Incorrect email or password")).to_be_visible()
    page.button("Create an account").click()
    page.textbox("Name").fill("Ada")
    page.textbox("Email").fill("ada@example.com")
    page.textbox("Password").fill("password")
    page.button("Sign up").click()
    expect(page.get_by_text("too common", exact=False)).to_be_visible()


def test_an_expired_access_token_is_refreshed_without_the_user_noticing(site, tabs):
    from datetime import timedelta

    base, _ = site({"JWT_ACCESS_TOKEN_EXPIRES": timedelta(seconds=2)})
    page = tabs(base).open().sign_up()
    refreshes = []
    page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith("/refresh") else None)
    time.sleep(3)  # past the first access token's life
    page.send("still here?")
    expect(page.messages().nth(1)).to_contain_text("Echo: still here?")
    expect(page.button("Log in")).to_be_hidden()
    assert refreshes
    # With a life this short a request may still meet an expired token (JWT times are whole
    # seconds): that 401 is answered by a refresh and the request sent again, unseen.
    page.assert_quiet(expected=[401])


def test_an_expired_login_goes_back_to_log_in_keeping_what_was_typed(site, tabs):
    base, _ = site()
    page = tabs(base).open().sign_up()
    page.send("first")
    expect(page.messages()).to_have_count(2)
    # The password changes elsewhere: every token of the account is revoked, the page's too.
    headers = api_login(base, page)
    user = page.context.request.get(base + "/api/auth/me", headers=headers).json()
    changed = page.context.request.put(
        base + f"/api/user/update/{user['id']}",
        headers=headers,
        data={"password": "a brand new passphrase", "current_password": PASSWORD},
    )
    assert changed.ok, changed.text()
    page.textbox("Message").fill("a long thought I do not want to lose")
    page.textbox("Message").press("Enter")
    expect(page.button("Log in")).to_be_visible()
    expect(page.get_by_text("Your login has expired")).to_be_visible()
    expect(page.textbox("Email")).to_have_value("ada@example.com")
    page.shot("02-login-expired")
    page.textbox("Password").fill("a brand new passphrase")
    page.button("Log in").click()
    expect(page.textbox("Message")).to_have_value("a long thought I do not want to lose")
    expect(page.messages()).to_have_count(2)


# --- chatting ------------------------------------------------------------------------------


def test_a_reply_streams_delta_by_delta_as_markdown(site, tabs, fake):
    base, _ = site()
    page = tabs(base).open().sign_up()
    models = page.role("combobox", "Model").locator("option").all_inner_texts()
    assert "echo/echo" in models and OPENAI in models
    pieces = ["Here is **bold**", " and code:\n\n", "```python\nprint('hi')\n", "```\n", "The end."]
    fake.reply(chunks=openai_stream(pieces, "gpt-4.1-mini"), gap=0.6)
    page.send("show me code", model=OPENAI)
    reply = page.messages().nth(1)
    expect(reply.locator(".body strong")).to_have_text("bold")
    assert "The end." not in reply.inner_text()  # shown before the stream ended
    expect(page.button("Stop")).to_be_visible()
    expect(reply).to_contain_text("The end.")
    expect(reply.locator("pre code")).to_have_text("print('hi')\n")
    expect(reply.get_by_role("button", name="Copy code")).to_be_visible()
    page.wait_idle()
    expect(reply.get_by_role("button", name="Regenerate")).to_be_visible()
    page.shot("03-chat")
    page.assert_quiet()


def test_enter_sends_shift_enter_breaks_the_line_and_new_chat(site, tabs):
    base, _ = site()
    page = tabs(base).open().sign_up()
    box = page.textbox("Message")
    box.fill("line one")
    box.press("Shift+Enter")
    box.type("line two")
    expect(box).to_have_value("line one\nline two")
    box.press("Enter")
    expect(page.messages().nth(1)).to_contain_text("line two")
    expect(box).to_have_value("")
    page.wait_idle()
    page.button("New chat").click()
    expect(page.messages()).to_have_count(0)
    page.send("second chat")
    expect(page.messages()).to_have_count(2)
    # Activity order: the chat written in last is on top.
    expect(page.chats()).to_have_text(["second chat", "line one line two"])
    page.chats().nth(1).click()
    expect(page.messages().first).to_contain_text("line one")
    page.send("back to the first")
    page.wait_idle()
    expect(page.chats()).to_have_text(["line one line two", "second chat"])


def test_stop_ends_the_stream_and_keeps_the_partial_reply(site, tabs, fake):
    base, app = site()
    page = tabs(base).open().sign_up()
    pieces = [f"part{n} " for n in range(12)]
    fake.reply(chunks=openai_stream(pieces, "gpt-4.1-mini"), gap=0.5)
    page.send("tell me a long story", model=OPENAI)
    reply = page.messages().nth(1)
    expect(reply).to_contain_text("part1")
    page.button("Stop").click()
    expect(reply).to_contain_text("Stopped")
    page.wait_idle()
    text = reply.inner_text()
    assert "part11" not in text
    # The server kept what was written, flagged incomplete, as the API promises.
    with app.app_context():

        def stored():
            row = db.session.scalar(select(Message).where(Message.is_bot))
            db.session.rollback()
            return row if row is not None and row.incomplete else None

        kept = wait_for(stored, timeout=15, what="the partial reply stored")
    assert kept.content.startswith("part0 part1") and "part11" not in kept.content
    page.reload()
    expect(page.messages().nth(1)).to_contain_text("part1")
    expect(page.messages().nth(1)).to_contain_text("Cut short")
    page.assert_quiet()


def test_regenerate_and_edit(site, tabs, fake):
    base, app = site()
    page = tabs(base).open().sign_up()
    page.role("combobox", "Model").select_option(OPENAI)
    fake.reply(chunks=openai_stream(["first answer"], "gpt-4.1-mini"))
    page.send("a question")
    expect(page.messages().nth(1)).to_contain_text("first answer")
    page.wait_idle()
    fake.reply(chunks=openai_stream(["second answer"], "gpt-4.1-mini"))
    page.button("Regenerate").click()
    expect(page.messages().nth(1)).to_contain_text("second answer")
    expect(page.messages()).to_have_count(2)
    page.wait_idle()
    fake.reply(chunks=openai_stream(["answer to the edit"], "gpt-4.1-mini"))
    page.messages().first.get_by_role("button", name="Edit").click()
    page.role("textbox", "Edit message").fill("a better question")
    page.button("Save").click()
    expect(page.messages().nth(1)).to_contain_text("answer to the edit")
    expect(page.messages().first).to_contain_text("a better question")
    page.wait_idle()
    page.reload()
    expect(page.messages()).to_have_count(2)
    expect(page.messages().first).to_contain_text("a better question")
    expect(page.messages().nth(1)).to_contain_text("answer to the edit")
    assert fake.requests[-1].body["messages"][-1]["content"] == "a better question"
    page.assert_quiet()


def test_a_failed_turn_shows_its_reason_and_a_retry(site, tabs, fake):
    base, _ = site()
    page = tabs(base).open().sign_up()
    fake.reply(status=400, body={"error": {"message": "the provider did not like it"}})
    page.send("will this work?", model=OPENAI)
    first = page.messages().first
    expect(first).to_contain_text("Failed:")
    expect(first).to_contain_text("did not like it")
    page.shot("04-failed-turn")
    page.button("Retry").click()
    expect(page.messages().nth(1)).to_contain_text("Hello from the stream")
    expect(page.messages()).to_have_count(2)
    page.wait_idle()
    # The retry answered the stored question in its chat: one chat, not two.
    expect(page.chats()).to_have_count(1)
    page.reload()
    expect(page.messages()).to_have_count(2)


def test_only_allowed_models_are_offered_and_a_refused_turn_can_be_retried(site, tabs):
    base, _ = site({"MODEL_ALLOWLIST": ["echo"]})
    page = tabs(base).open().sign_up()
    options = page.role("combobox", "Model").locator("option").all_inner_texts()
    assert options == ["echo/echo"]  # only the models the account may use
    base2, _ = site({"CHAT_RATE_LIMIT": "1/minute"})
    other = tabs(base2).open().sign_up("Bea", "bea@example.com")
    other.send("one")
    other.wait_idle()
    other.send("two")
    refused = other.messages().last
    expect(refused).to_contain_text("Too many requests")
    # Refused before anything was stored: Retry sends the words again (refused again here).
    other.button("Retry").click()
    expect(refused).to_contain_text("Too many requests")
    expect(other.messages()).to_have_count(3)
    other.assert_quiet(expected=[429])


# --- sessions ------------------------------------------------------------------------------


def test_rename_instructions_default_model_export_and_delete(site, tabs, fake):
    base, _ = site()
    page = tabs(base).open().sign_up()
    page.send("plan a trip")
    page.wait_idle()
    page.button("Rename").click()
    page.textbox("Title").fill("Trip <b>planning</b>")
    page.button("Save").click()
    expect(page.chats()).to_have_text(["Trip <b>planning</b>"])
    expect(page.role("heading", "Trip <b>planning</b>")).to_be_visible()
    page.button("Instructions").click()
    page.role("textbox", "Instructions for this chat").fill("Answer in French.")
    page.role("combobox", "Default model").select_option(OPENAI)
    page.button("Save").click()
    expect(page.role("combobox", "Model")).to_have_value(OPENAI)
    page.send("and the hotel?")
    page.wait_idle()
    assert fake.requests[-1].body["messages"][0] == {
        "role": "system",
        "content": "Answer in French.",
    }
    # Export: this chat as JSON, every chat as a Markdown zip.
    page.button("Export").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("radio", name="JSON").check()
    with page.expect_download() as download:
        dialog.get_by_role("button", name="Export").click()
    exported = json.loads(download.value.path().read_text())
    assert exported["title"] == "Trip <b>planning</b>" and len(exported["messages"]) == 4
    page.button("Export").click()
    dialog.get_by_role("radio", name="All chats", exact=True).check()
    dialog.get_by_role("radio", name="Markdown", exact=False).check()
    with page.expect_download() as download:
        dialog.get_by_role("button", name="Export").click()
    assert download.value.suggested_filename == "polygenix-chats.zip"
    with zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes())) as archive:
        assert len(archive.namelist()) == 1
    # Delete asks first; Cancel keeps the chat.
    page.button("Delete").click()
    page.shot("05-delete-confirmation")
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.chats()).to_have_count(1)
    page.button("Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.chats()).to_have_count(0)
    expect(page.role("heading", "New chat")).to_be_visible()
    page.assert_quiet()


def test_a_session_deleted_in_another_tab(site, tabs):
    base, app = site()
    first = tabs(base).open().sign_up()
    first.send("keep me?")
    first.wait_idle()
    second = tabs(base).open()
    expect(second.chats()).to_have_count(1)
    second.chats().first.click()
    second.button("Delete").click()
    second.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(second.chats()).to_have_count(0)
    expect(first.get_by_text("deleted in another tab", exact=False)).to_be_visible()
    expect(first.chats()).to_have_count(0)
    expect(first.messages()).to_have_count(0)
    # Writing on starts a new chat; the deleted one does not come back.
    first.send("a fresh start")
    first.wait_idle()
    expect(first.chats()).to_have_text(["a fresh start"])
    with app.app_context():
        titles = db.session.scalars(select(ChatSession.title)).all()
    assert titles == ["a fresh start"]
    # A tab that missed the news (another device) finds out when it opens the chat.
    headers = api_login(base, first)
    number = first.evaluate("location.hash").rsplit("/", 1)[-1]
    first.context.request.delete(base + f"/api/ai_chat/{number}", headers=headers)
    first.chats().first.click()
    expect(first.get_by_text("no longer exists", exact=False)).to_be_visible()


def test_a_chat_deleted_in_another_tab_while_its_reply_streams(site, tabs, fake):
    base, app = site()
    first = tabs(base).open().sign_up()
    fake.reply(chunks=openai_stream([f"word{n} " for n in range(20)], "gpt-4.1-mini"), gap=0.4)
    first.send("a slow answer please", model=OPENAI)
    expect(first.messages().nth(1)).to_contain_text("word1")
    second = tabs(base).open()
    second.chats().first.click()
    second.button("Delete").click()
    second.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(first.get_by_text("deleted in another tab", exact=False)).to_be_visible()
    expect(first.messages()).to_have_count(0)
    expect(first.button("Stop")).to_be_hidden()
    # Nothing of the turn is stored, and the first tab carries on.
    with app.app_context():
        wait_for(lambda: fake.disconnected.is_set(), timeout=15, what="the provider hung up on")
        assert db.session.scalars(select(ChatSession)).all() == []
    first.send("next")
    expect(first.messages().nth(1)).to_contain_text("Hello from the stream")
    first.assert_quiet()


def test_enter_pressed_twice_sends_once(site, tabs, fake):
    base, app = site()
    page = tabs(base).open().sign_up()
    fake.reply(chunks=openai_stream(["slow", " reply"], "gpt-4.1-mini"), gap=0.5)
    page.role("combobox", "Model").select_option(OPENAI)
    page.textbox("Message").fill("only once")
    page.textbox("Message").press("Enter")
    page.textbox("Message").press("Enter")
    page.button("Send").click(force=True)
    page.wait_idle()
    expect(page.messages()).to_have_count(2)
    with app.app_context():
        assert db.session.scalars(select(Message.content).where(~Message.is_bot)).all() == [
            "only once"
        ]


def test_the_sidebar_loads_more_chats_as_it_scrolls(site, tabs):
    base, app = site()
    page = tabs(base).open().sign_up()
    with app.app_context():
        user = db.session.scalar(select(User))
        for number in range(1, 71):
            db.session.add(ChatSession(user_id=user.id, number=number, title=f"chat {number}"))
        db.session.commit()
    page.reload()
    expect(page.chats()).to_have_count(30)
    page.chats().last.scroll_into_view_if_needed()
    expect(page.chats()).to_have_count(60)
    page.chats().last.scroll_into_view_if_needed()
    expect(page.chats()).to_have_count(70)
    titles = page.chats().all_inner_texts()
    assert titles[0] == "chat 70" and titles[-1] == "chat 1"


def test_search_highlights_matches_and_opens_the_chat_at_the_hit(site, tabs):
    base, app = site()
    page = tabs(base).open().sign_up()
    texts = [f"filler message {n}" for n in range(150)]
    texts[20] = "book the night train to Lyon"
    seed_chat(app, 1, "Holidays", texts)
    seed_chat(app, 2, "Other <i>things</i>", [])
    page.reload()
    page.role("searchbox", "Search chats").fill("train")
    results = page.role("region", "Search results").get_by_role("link")
    expect(results).to_have_count(1)
    expect(results.first.locator("mark")).to_have_text("train")
    page.shot("06-search")
    results.first.click()
    hit = page.locator("li.msg.hit")
    expect(hit).to_contain_text("book the night train to Lyon")
    expect(hit.locator("mark")).to_have_text("train")
    expect(hit).to_be_in_viewport()
    page.role("searchbox", "Search chats").fill("things")
    expect(results.first).to_contain_text("Other <i>things</i>")
    page.assert_quiet()


def test_a_session_of_a_thousand_messages_opens_and_scrolls(site, tabs):
    base, app = site()
    page = tabs(base).open().sign_up()
    seed_chat(app, 1, "Long one", [f"message {n} with *some* text" for n in range(1000)])
    page.reload()
    page.chats().first.click()
    messages = page.messages()
    expect(messages.last).to_contain_text("message 999")
    expect(messages.last).to_be_in_viewport()
    shown = messages.count()
    assert shown < 100  # a window of it, not a thousand nodes at once
    conversation = page.role("region", "Conversation")
    for _ in range(40):
        conversation.evaluate("node => { node.scrollTop = 0; }")
        if page.get_by_text("message 0 with", exact=False).count():
            break
        page.wait_for_timeout(100)
    expect(messages).to_have_count(1000)
    expect(messages.first).to_contain_text("message 0 with")
    page.send("and one more")
    expect(messages).to_have_count(1002)
    page.assert_quiet()


# --- settings and usage --------------------------------------------------------------------


def test_settings_name_password_and_api_keys(site, tabs):
    base, _ = site()
    page = tabs(base).open().sign_up()
    page.role("link", "Settings").click()
    expect(page.role("heading", "Settings")).to_be_focused()
    page.textbox("Name").fill("Ada Lovelace")
    page.button("Save").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(page.locator("#who")).to_have_text("Ada Lovelace")
    # A wrong current password is refused; the right one changes it, and the page stays in.
    page.textbox("Current password").fill("not my password")
    page.textbox("New password").fill("another good passphrase")
    page.button("Change password").click()
    expect(page.get_by_text("Current password is incorrect", exact=False)).to_be_visible()
    page.textbox("Current password").fill(PASSWORD)
    page.button("Change password").click()
    expect(page.get_by_text("Password changed", exact=False)).to_be_visible()
    # Keys: made and shown once with a copy button, listed, revoked.
    page.textbox("Key name").fill("laptop")
    page.button("Create key").click()
    key = page.role("textbox", "New key").input_value()
    assert re.fullmatch(r"pgx_[A-Za-z0-9_-]{43}", key)
    expect(page.button("Copy")).to_be_visible()
    page.shot("07-settings")
    expect(page.locator("tbody tr")).to_have_count(1)
    listed = page.context.request.get(base + "/api/ai_chat/models", headers=bearer(key))
    assert listed.ok
    page.button("Revoke").click()
    expect(page.get_by_text("No keys yet.")).to_be_visible()
    assert page.context.request.get(base + "/api/ai_chat/models", headers=bearer(key)).status == 401
    # The new password is the one that works now.
    page.button("Log out").click()
    page.log_in(password="another good passphrase")
    page.assert_quiet(expected=[422])


def test_usage_charts_tables_and_budget(site, tabs):
    base, _ = site({"TOKEN_BUDGET": "1000/day"})
    page = tabs(base).open().sign_up()
    page.send("count my tokens please")
    page.wait_idle()
    page.role("link", "Usage").click()
    expect(page.role("heading", "Usage")).to_be_visible()
    expect(page.role("img", "Tokens per day", exact=False)).to_be_visible()
    expect(page.role("img", "Cost per model", exact=False)).to_be_visible()
    model_table = page.get_by_role("table", name="Per model")
    expect(model_table.get_by_role("row")).to_have_count(2)
    expect(model_table).to_contain_text("echo/echo")
    expect(page.get_by_text(re.compile(r"Tokens: [\d,]+ left of 1,000 this day"))).to_be_visible()
    expect(page.get_by_text("Everyone (admins only)")).to_have_count(0)
    page.shot("08-usage")
    page.assert_quiet()


def test_admins_manage_model_access_budgets_and_see_everyones_usage(site, tabs):
    base, app = site()
    with app.app_context():
        create_user(name="Root", email="root@example.com", password=PASSWORD, is_admin=True)
    bob = tabs(base, fresh=True).open().sign_up("Bob", "bob@example.com")
    bob.send("hi from bob")
    bob.wait_idle()
    page = tabs(base).open().log_in("root@example.com")
    page.role("link", "Settings").click()
    users = page.locator("section[aria-labelledby=users-title]")
    expect(users.get_by_text("bob@example.com")).to_be_visible()
    page.role("textbox", "Models for bob@example.com").fill("echo")
    page.role("textbox", "Token budget for bob@example.com").fill("5000/day")
    page.button("Save limits for bob@example.com").click()
    expect(users.get_by_text("Saved.")).to_be_visible()
    page.shot("09-admin-settings")
    limits = page.context.request.get(
        base + "/api/admin/users/2/limits", headers=api_login(base, page, "root@example.com")
    ).json()
    assert limits["models"] == ["echo"] and limits["token_budget"] == "5000/day"
    page.role("link", "Usage").click()
    expect(page.get_by_text("Everyone (admins only)")).to_be_visible()
    expect(page.get_by_role("table", name="Per user")).to_contain_text("bob@example.com")
    page.shot("10-admin-usage")
    page.assert_quiet()


# --- keyboard and contrast -----------------------------------------------------------------

CONTRAST = """() => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const worst = [];
  const texts = "button, a, label, p, span, h1, h2, h3, li, strong, th, td";
  for (const node of document.querySelectorAll(texts)) {
    if (!node.offsetParent || !node.textContent.trim()) continue;
    const fg = lum(rgb(getComputedStyle(node).color));
    const bg = lum(background(node));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const what = `${node.tagName} "${node.textContent.trim().slice(0, 30)}"`;
    if (ratio < 4.5) worst.push(`${what} ${ratio.toFixed(2)}`);
  }
  return worst;
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa(site, tabs, scheme):
    base, _ = site()
    page = tabs(base).open()
    page.emulate_media(color_scheme=scheme)
    assert page.evaluate(CONTRAST) == []
    page.sign_up()
    page.send("some **text** and `code`")
    page.wait_idle()
    assert page.evaluate(CONTRAST) == []
    page.role("link", "Settings").click()
    page.role("heading", "Settings").wait_for()
    assert page.evaluate(CONTRAST) == []


def test_keyboard_only(site, tabs):
    base, _ = site()
    page = tabs(base).open()
    # Log in form: focus starts in it; Tab reaches every field and the buttons.
    page.keyboard.press("Tab")
    focused = []
    for _ in range(4):
        focused.append(
            page.evaluate("document.activeElement.textContent || document.activeElement.id")
        )
        page.keyboard.press("Tab")
    assert "Create an account" in focused
    page.button("Create an account").focus()
    page.keyboard.press("Enter")
    page.textbox("Name").focus()
    page.keyboard.type("Ada")
    page.keyboard.press("Tab")
    page.keyboard.type("ada@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    # Typed and sent at once, before the page may have its list of models: it is sent all the
    # same.
    page.textbox("Message").wait_for()
    page.textbox("Message").focus()
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    expect(page.messages()).to_have_count(2)
    page.wait_idle()
    # Rename with the keyboard alone: focus the button, Enter, type, Enter.
    page.button("Rename").focus()
    page.keyboard.press("Enter")
    expect(page.textbox("Title")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("Renamed by keys")
    page.keyboard.press("Enter")
    expect(page.chats()).to_have_text(["Renamed by keys"])
    # Delete: the confirmation opens on Cancel (the safe choice); Escape closes it.
    page.button("Delete").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog").get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.chats()).to_have_count(1)
    page.assert_quiet()


# --- images --------------------------------------------------------------------------------


def test_images_are_attached_by_picker_paste_and_drop_and_shown_in_history(site, tabs, tmp_path):
    base, app = site()
    page = tabs(base).open().sign_up()
    picked = tmp_path / "photo.jpg"  # a PNG, whatever its name says
    picked.write_bytes(images.png((12, 8)))
    with page.expect_file_chooser() as chooser:
        page.button("Attach images").click()
    chooser.value.set_files(str(picked))
    to_send = page.role("list", "Images to send")
    expect(to_send.get_by_role("listitem")).to_have_count(1)
    expect(to_send.get_by_role("button", name="Remove photo.jpg")).to_be_visible()
    # Pasted into the message box, then dropped on it: one image each.
    page.evaluate(
        """async (bytes) => {
            const box = document.getElementById('message');
            const file = (name) => new File([new Uint8Array(bytes)], name, {type: 'image/gif'});
            const pasted = new DataTransfer();
            pasted.items.add(file('pasted.gif'));
            box.dispatchEvent(new ClipboardEvent('paste', {clipboardData: pasted, bubbles: true}));
            const dropped = new DataTransfer();
            dropped.items.add(file('dropped.gif'));
            box.dispatchEvent(new DragEvent('drop', {dataTransfer: dropped, bubbles: true}));
        }""",
        list(images.gif((3, 3))),
    )
    expect(to_send.get_by_role("listitem")).to_have_count(3)
    to_send.get_by_role("button", name="Remove dropped.gif").click()
    expect(to_send.get_by_role("listitem")).to_have_count(2)
    page.send("what are these?")
    page.wait_idle()
    reply = page.messages().nth(1)
    # The echo describes the images it was sent, in order.
    expect(reply).to_contain_text("[image: image/png, ")
    expect(reply).to_contain_text("[image: image/gif, ")
    expect(to_send).to_be_hidden()
    question = page.messages().nth(0)
    expect(question.get_by_role("img")).to_have_count(2)
    page.shot("15-images")
    # After a reload, history shows them, loaded with the login's token.
    page.reload()
    page.chats().first.click()
    thumbnails = page.messages().nth(0).get_by_role("img")
    expect(thumbnails).to_have_count(2)
    expect(thumbnails.first).to_have_attribute("alt", re.compile(r"Image 1 of 2 \(PNG, 12×8\)"))
    for thumbnail in thumbnails.all():
        expect(thumbnail).to_have_js_property("complete", True)
        expect(thumbnail).not_to_have_js_property("naturalWidth", 0)
    # The dropped image was removed before sending: deleted at once, not left to the sweep.
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Attachment)) == 2
    page.assert_quiet()


def test_a_file_that_is_no_image_is_refused_with_the_servers_reason(site, tabs, tmp_path):
    base, _ = site()
    page = tabs(base).open().sign_up()
    fake_png = tmp_path / "page.png"
    fake_png.write_bytes(b"<html><script>alert(1)</script></html>")
    with page.expect_file_chooser() as chooser:
        page.button("Attach images").click()
    chooser.value.set_files(str(fake_png))
    expect(page.role("alert", "")).to_contain_text("PNG, JPEG, GIF or WebP")
    page.send("and this?")
    # The message is not sent while an image failed: the words stay in the box.
    expect(page.textbox("Message")).to_have_value("and this?")
    expect(page.messages()).to_have_count(0)
    page.assert_quiet(expected=(422,))
