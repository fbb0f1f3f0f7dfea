"""Attachments through the real HTTP API: uploads recognised from their bytes, limits, owners,
conditional reads, deletion cascades and the orphan sweep."""

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from polygenix.attachments.models import Attachment
from polygenix.extensions import db
from polygenix.jobs import registry
from tests import images
from tests.gunicorn_server import gunicorn, register_over_http
from tests.helpers import FakeClock, ask, assert_envelope

UPLOAD = "/api/ai_chat/attachments"


def upload(client, headers, data: bytes, filename="picture.png", content_type="image/png"):
    """A multipart upload, encoded in memory (the test client would spool a large one to a
    temporary file that it never closes when the app refuses the body unread)."""
    boundary, body = encode_multipart(
        {"file": FileStorage(io.BytesIO(data), filename, content_type=content_type)}
    )
    return client.post(
        UPLOAD,
        headers=headers,
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


@pytest.mark.parametrize(
    ("make", "media_type"),
    [
        (images.png, "image/png"),
        (images.jpeg, "image/jpeg"),
        (images.gif, "image/gif"),
        (images.webp, "image/webp"),
    ],
)
def test_each_image_type_is_recognised_and_read_back(client, ada, make, media_type):
    data = make((7, 5))
    response = upload(client, ada, data, "x.bin", "application/octet-stream")
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == {"id", "media_type", "bytes", "width", "height", "sha256", "created_at"}
    assert body["media_type"] == media_type
    assert (body["bytes"], body["width"], body["height"]) == (len(data), 7, 5)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    got = client.get(f"{UPLOAD}/{body['id']}", headers=ada)
    assert got.status_code == 200
    assert got.data == data
    assert got.headers["Content-Type"] == media_type
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].startswith("attachment")
    assert got.headers["Cache-Control"].startswith("private")
    again = client.get(
        f"{UPLOAD}/{body['id']}", headers=ada | {"If-None-Match": got.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.data == b""


def test_the_bytes_decide_not_the_name_or_declared_type(client, ada):
    # A PNG named .jpg and declared JPEG is a PNG.
    response = upload(client, ada, images.png(), "photo.jpg", "image/jpeg")
    assert response.status_code == 201
    assert response.json["media_type"] == "image/png"
    # An HTML page named .png and declared PNG is refused.
    page = b"<html><script>alert(1)</script></html>"
    refused = upload(client, ada, page, "picture.png", "image/png")
    assert_envelope(refused, 422)
    assert "PNG, JPEG, GIF or WebP" in refused.json["message"]
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert_envelope(upload(client, ada, svg, "a.svg", "image/svg+xml"), 422)


@pytest.mark.parametrize(
    "data",
    [
        images.png()[:40],  # truncated after the header
        images.jpeg()[:30],
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 50,  # a magic number and nothing of an image
        b"GIF89a",
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        b"",
        # Whole but for their last bytes: each format's structure is followed to its end.
        images.png((64, 64))[:-1],  # IEND's CRC cut short
        images.png((64, 64))[:-12],  # no IEND
        images.flipped(images.png((64, 64)), 45),  # a bit changed in IDAT: its CRC is wrong
        images.jpeg((64, 64))[:-2],  # no end of image after the scan
        images.gif((64, 64))[:-1],  # no trailer
        images.gif((64, 64))[:-6],  # the image data's blocks cut short
        images.webp((64, 64))[:-4],  # shorter than its RIFF length
    ],
)
def test_truncated_or_corrupt_images_are_422(client, ada, data):
    assert_envelope(upload(client, ada, data), 422)


@pytest.mark.parametrize(
    ("data", "media_type"),
    [(images.animated("GIF"), "image/gif"), (images.animated("WEBP"), "image/webp")],
)
def test_animated_images_are_taken_with_their_size(client, ada, data, media_type):
    response = upload(client, ada, data)
    assert response.status_code == 201, response.json
    assert (response.json["media_type"], response.json["width"]) == (media_type, 6)


def test_a_decompression_bomb_is_a_422_and_the_worker_lives(make_app, auth):
    app = make_app({"ATTACHMENT_MAX_PIXELS": 10_000_000})
    client = app.test_client()
    headers = auth.register(client=client)
    bomb = images.png_bomb(30_000)  # 900 million pixels in a few kilobytes
    assert len(bomb) < 100_000
    response = upload(client, headers, bomb)
    assert_envelope(response, 422)
    assert "pixels" in response.json["message"]
    assert upload(client, headers, images.png()).status_code == 201


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_over_the_pixel_limit_is_a_422_in_each_format(make_app, auth, fmt):
    client = make_app({"ATTACHMENT_MAX_PIXELS": 100 * 100}).test_client()
    headers = auth.register(client=client)
    response = upload(client, headers, images.image(fmt, (101, 100)))
    assert_envelope(response, 422)
    assert "101×100 pixels, over the limit of 10000" in response.json["message"]
    assert upload(client, headers, images.image(fmt, (100, 100))).status_code == 201


def test_size_limit_is_a_413_in_the_envelope(make_app, auth):
    app = make_app({"ATTACHMENT_MAX_BYTES": 200_000})
    client = app.test_client()
    headers = auth.register(client=client)
    big = images.noisy_png(250_000)
    response = upload(client, headers, big)
    assert_envelope(response, 413)
    assert "ATTACHMENT_MAX_BYTES" in response.json["message"]
    # Over the whole request's limit too (no Content-Length check can be skipped).
    huge = upload(client, headers, b"\x89PNG\r\n\x1a\n" + b"\x00" * 2_000_000)
    assert_envelope(huge, 413)
    # Under the file limit yet over MAX_CONTENT_LENGTH (1 MiB by default): accepted.
    app2 = make_app({"ATTACHMENT_MAX_BYTES": 3_000_000})
    client2 = app2.test_client()
    headers2 = auth.register("carol@example.com", client=client2)
    accepted = upload(client2, headers2, images.noisy_png(1_500_000))
    assert accepted.status_code == 201, accepted.json


def test_quota_full_is_a_409(make_app, auth):
    data = images.noisy_png(20_000)
    app = make_app({"ATTACHMENT_QUOTA_BYTES": 2 * len(data) + 10})
    client = app.test_client()
    headers = auth.register(client=client)
    first = upload(client, headers, data)
    assert upload(client, headers, data).status_code == 201
    assert_envelope(upload(client, headers, data), 409)
    # Deleting one frees its room.
    assert client.delete(f"{UPLOAD}/{first.json['id']}", headers=headers).status_code == 200
    assert upload(client, headers, data).status_code == 201


def test_a_missing_file_is_a_422(client, ada):
    response = client.post(
        UPLOAD, headers=ada, data={"other": "x"}, content_type="multipart/form-data"
    )
    assert_envelope(response, 422)
    assert_envelope(client.post(UPLOAD, headers=ada, json={"file": "x"}), 422)
    boundary, body = encode_multipart(
        {"file": FileStorage(io.BytesIO(images.png()), "a.png"), "owner": "2"}
    )
    extra = client.post(
        UPLOAD, headers=ada, data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert_envelope(extra, 422)
    assert extra.json["errors"] == {"files": {"owner": ["Unknown field."]}}


def test_another_users_attachment_is_a_404_everywhere(client, ada, bob):
    mine = upload(client, ada, images.png()).json["id"]
    assert_envelope(client.get(f"{UPLOAD}/{mine}", headers=bob), 404)
    assert_envelope(client.delete(f"{UPLOAD}/{mine}", headers=bob), 404)
    assert_envelope(client.get(f"{UPLOAD}/999999", headers=ada), 404)
    assert client.get(f"{UPLOAD}/{mine}", headers=ada).status_code == 200
    assert client.get(f"{UPLOAD}/{mine}").status_code == 401


def test_api_keys_may_upload(client, ada):
    key = client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    headers = {"Authorization": f"Bearer {key}"}
    created = upload(client, headers, images.gif())
    assert created.status_code == 201
    assert client.get(f"{UPLOAD}/{created.json['id']}", headers=ada).status_code == 200


def _count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Attachment))


def test_orphans_are_swept_after_the_hours_and_used_ones_kept(make_app, auth):
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    app = make_app({"CLOCK": clock, "ATTACHMENT_ORPHAN_HOURS": 0.5})
    client = app.test_client()
    headers = auth.register(client=client)
    orphan = upload(client, headers, images.png()).json["id"]
    used = upload(client, headers, images.jpeg()).json["id"]
    assert ask(client, headers, "look", attachment_ids=[used]).status_code == 200
    clock.advance(29 * 60)
    result = app.test_cli_runner().invoke(args=["attachments", "sweep"])
    assert "Deleted 0 unused attachments" in result.output
    clock.advance(2 * 60)
    result = app.test_cli_runner().invoke(args=["attachments", "sweep"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 unused attachment" in result.output
    assert_envelope(client.get(f"{UPLOAD}/{orphan}", headers=headers), 404)
    assert client.get(f"{UPLOAD}/{used}", headers=headers).status_code == 200


def test_the_sweep_is_a_periodic_job(app):
    assert registry(app).periodic["sweep_orphan_attachments"] == pytest.approx(3600)


def test_attachments_go_with_their_session_and_their_user(client, ada, bob, app):
    first = upload(client, ada, images.png()).json["id"]
    turn = ask(client, ada, "see", attachment_ids=[first])
    assert turn.status_code == 200, turn.json
    chat_id = turn.json["session_id"]
    upload(client, bob, images.png())
    assert _count(app) == 2
    assert client.delete(f"/api/ai_chat/{chat_id}", headers=ada).status_code == 200
    assert_envelope(client.get(f"{UPLOAD}/{first}", headers=ada), 404)
    assert _count(app) == 1
    upload(client, ada, images.gif())
    ada_id = client.get("/api/user/", headers=ada).json["id"]
    assert client.delete(f"/api/user/{ada_id}", headers=ada).status_code == 200
    assert _count(app) == 1  # Bob's


# --- under real gunicorn: two workers, real HTTP --------------------------------------------


def test_uploads_under_gunicorn_quota_holds_across_workers_and_413_is_the_envelope(tmp_path):
    data = images.noisy_png(1_200_000)  # over MAX_CONTENT_LENGTH (1 MiB), under 5 MiB
    quota = str(3 * len(data) + 100)
    with gunicorn(tmp_path, {"ATTACHMENT_QUOTA_BYTES": quota}) as (base, _):
        headers = register_over_http(base)

        def send(body: bytes):
            files = {"file": ("photo.png", body, "image/png")}
            return requests.post(base + UPLOAD, headers=headers, files=files, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            statuses = [r.status_code for r in pool.map(lambda _: send(data), range(8))]
        assert sorted(statuses) == [201] * 3 + [409] * 5
        too_big = send(b"\x89PNG\r\n\x1a\n" + bytes(6 * 1024 * 1024))
        assert too_big.status_code == 413
        assert too_big.json()["code"] == 413
        assert "ATTACHMENT_MAX_BYTES" in too_big.json()["message"]
        listed = requests.get(base + "/api/ai_chat/history", headers=headers, timeout=10)
        assert listed.status_code == 200  # the server serves on
