"""Editing a message's images in the web chat, in a real browser: kept, removed and added,
cancelled without leaving uploads behind, and the reply to the edit rendered inert."""

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from polygenix.attachments.models import Attachment
from polygenix.extensions import db
from tests import images
from tests.fake_provider import openai_stream
from tests.helpers import OPENAI, wait_for
from tests.test_web_security import HOSTILE

pytestmark = pytest.mark.slow


def pick(page, button, *paths):
    with page.expect_file_chooser() as chooser:
        button.click()
    chooser.value.set_files([str(p) for p in paths])


def attachment_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Attachment))


def question_images(page):
    return page.messages().first.locator(".images img")


def test_an_edit_keeps_removes_and_adds_images(site, tabs, tmp_path):
    base, app = site()
    page = tabs(base).open().sign_up()
    (tmp_path / "a.png").write_bytes(images.png((12, 8)))
    (tmp_path / "b.gif").write_bytes(images.gif((3, 3)))
    (tmp_path / "c.jpg").write_bytes(images.jpeg((5, 4)))
    pick(page, page.button("Attach images"), tmp_path / "a.png", tmp_path / "b.gif")
    expect(page.role("list", "Images to send").get_by_role("listitem")).to_have_count(2)
    page.send("what are these?")
    page.wait_idle()
    expect(page.messages().nth(1)).to_contain_text("[image: image/gif, ")
    expect(question_images(page)).to_have_count(2)

    # Edit: the message's images are in the form, each with its own Remove button.
    page.messages().first.get_by_role("button", name="Edit").click()
    kept = page.role("list", "Images of the message")
    expect(kept.get_by_role("listitem")).to_have_count(2)
    expect(kept.get_by_role("img", name="Image 1 (PNG, 12×8)")).to_be_visible()
    for n, name in ((1, "PNG, 12×8"), (2, "GIF, 3×3")):
        picture = kept.get_by_role("img", name=f"Image {n} ({name})")
        expect(picture).to_have_attribute("src", re.compile(r"^blob:"))
    kept.get_by_role("button", name="Remove image 1 (PNG, 12×8)").click()
    expect(kept.get_by_role("listitem")).to_have_count(1)
    # The focus moves to what is left, not to the page's start.
    expect(kept.get_by_role("button", name="Remove image 1 (GIF, 3×3)")).to_be_focused()
    pick(page, page.button("Attach image"), tmp_path / "c.jpg")
    expect(kept.get_by_role("button", name="Remove c.jpg")).to_be_visible()
    page.role("textbox", "Edit message").fill("and now?")
    page.shot("16-edit-images")
    page.button("Save").click()
    page.wait_idle()
    reply = page.messages().nth(1)
    expect(reply).to_contain_text("[image: image/gif, ")
    expect(reply).to_contain_text("[image: image/jpeg, ")
    expect(reply).not_to_contain_text("image/png")
    expect(question_images(page)).to_have_count(2)
    expect(question_images(page).nth(1)).to_have_attribute(
        "alt", re.compile(r"Image 2 of 2 \(JPEG, 5×4\)")
    )

    # As stored: after a reload, the edited question has the GIF then the JPEG.
    page.reload()
    page.chats().first.click()
    expect(page.messages().first).to_contain_text("and now?")
    expect(question_images(page)).to_have_count(2)
    expect(question_images(page).first).to_have_attribute(
        "alt", re.compile(r"Image 1 of 2 \(GIF, 3×3\)")
    )

    # An edit given up leaves no upload behind, and the message as it was.
    before = attachment_count(app)
    page.messages().first.get_by_role("button", name="Edit").click()
    pick(page, page.button("Attach image"), tmp_path / "a.png")
    kept = page.role("list", "Images of the message")
    expect(kept.get_by_role("listitem")).to_have_count(3)
    expect(kept.locator("li.uploading")).to_have_count(0)
    assert attachment_count(app) == before + 1
    page.button("Cancel").click()
    expect(question_images(page)).to_have_count(2)
    wait_for(lambda: attachment_count(app) == before, what="the upload deleted", interval=0.05)

    # Every image removed: the question goes on with its words alone.
    page.messages().first.get_by_role("button", name="Edit").click()
    kept = page.role("list", "Images of the message")
    for _ in range(2):
        kept.get_by_role("button", name=re.compile(r"^Remove image 1 ")).click()
    expect(kept).to_be_hidden()
    page.button("Save").click()
    page.wait_idle()
    expect(page.messages().nth(1).locator(".body")).to_have_text("Echo: and now?")
    expect(question_images(page)).to_have_count(0)
    page.assert_quiet()


def test_the_reply_to_an_edit_with_images_stays_inert(site, tabs, fake, tmp_path):
    base, _ = site()
    page = tabs(base).open().sign_up()
    (tmp_path / "a.png").write_bytes(images.png((6, 6)))
    pick(page, page.button("Attach images"), tmp_path / "a.png")
    fake.reply(chunks=openai_stream(["a first answer"], "gpt-4.1-mini"))
    page.send("look", model=OPENAI)
    page.wait_idle()
    fake.reply(chunks=openai_stream(HOSTILE, "gpt-4.1-mini"), gap=0.02)
    page.messages().first.get_by_role("button", name="Edit").click()
    page.role("textbox", "Edit message").fill('look <img src=x onerror="window.__pwned=1">')
    page.button("Save").click()
    page.wait_idle()
    reply = page.messages().nth(1)
    expect(reply).to_contain_text("<img src=x onerror=")
    for tag in ("img", "svg", "script", "iframe", "style", "form", "details"):
        assert reply.locator(tag).count() == 0, tag
    expect(page.messages().first).to_contain_text('look <img src=x onerror="window.__pwned=1">')
    assert page.evaluate("window.__pwned") is None
    # The image went with the edit, kept as it was.
    assert fake.requests[-1].body["messages"][-1]["content"][1]["type"] == "image_url"
    expect(question_images(page)).to_have_count(1)
    page.assert_quiet()
