"""What a 1 MiB image adds to a chat turn, against the least it could add: storing those bytes
in the database and sending them to the provider.

The app runs in this process (Flask's test client) on a fresh SQLite file (or --database-url),
with the fake provider on 127.0.0.1 for `openai`. Medians of --samples of each:

- a text turn;
- the same turn with a 1 MiB PNG (random pixels: it does not compress): its upload
  (`POST /api/ai_chat/attachments`) then the turn with its `attachment_ids`;
- the floor: the upload's multipart body parsed into memory (werkzeug, as the app does), the
  same bytes INSERTed into a scratch table and committed, read back, and POSTed base64-encoded
  in a JSON body to the fake provider (the base64 joined into the body as it is: the least a
  turn could spend on it);
- an upload of a 1x1 PNG: what an upload's request costs whatever its image (authentication,
  the rate limit, the quota, a transaction).
- a /v1 chat completion with the same PNG inline (a data: URL in an image_url part), and the
  same completion with text alone: what an image sent inline costs (its base64 checked and
  decoded, the bytes' structure checked and stored, the base64 sent to the provider as it is).

The image's cost is (upload + turn with it) - (text turn), to be compared with the floor (receive
+ store + send) and with the floor plus the check an upload needs (its structure, the size from
its header: see polygenix/attachments/images.py). The calls are taken in turn within each sample.

    .venv/bin/python bench/images.py
"""

import argparse
import base64
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402
from werkzeug.datastructures import FileStorage  # noqa: E402
from werkzeug.formparser import parse_form_data  # noqa: E402
from werkzeug.test import EnvironBuilder, encode_multipart  # noqa: E402

from polygenix import create_app  # noqa: E402
from polygenix.attachments.images import inspect  # noqa: E402
from polygenix.extensions import db  # noqa: E402
from tests.fake_provider import FakeProvider  # noqa: E402
from tests.images import noisy_png, png  # noqa: E402


def medians_ms(calls: dict, samples: int) -> dict[str, float]:
    """Each call's median, the calls taken in turn within each sample (a machine whose speed
    drifts slows them all alike)."""
    for call in calls.values():
        call()
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(samples):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            timings[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="runs per median")
    parser.add_argument("--mib", type=float, default=1.0, help="the image's size in MiB")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()

    image = noisy_png(int(args.mib * 1024 * 1024))
    fake = FakeProvider()
    with (
        tempfile.TemporaryDirectory() as folder,
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stderr(devnull),
    ):
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": args.database_url or f"sqlite:///{folder}/bench.db",
                "SECRET_KEY": "s" * 48,
                "JWT_SECRET_KEY": "j" * 64,
                "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
                "CHAT_RATE_LIMIT": "1000000/minute",
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": fake.url + "/v1",
                "JOBS_IN_WEB_WORKERS": False,
            }
        )
        with app.app_context():
            upgrade()
            with db.engine.begin() as connection:
                connection.execute(text("DROP TABLE IF EXISTS bench_blobs"))
                connection.execute(
                    text(
                        "CREATE TABLE bench_blobs (data BYTEA)".replace(
                            "BYTEA", "BLOB" if db.engine.dialect.name == "sqlite" else "BYTEA"
                        )
                    )
                )
        client = app.test_client()
        token = client.post(
            "/api/auth/register",
            json={"name": "Bench", "email": "bench@example.com", "password": "long enough"},
        ).json["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        api_key = client.post("/api/keys", headers=headers, json={"name": "bench"}).json["key"]
        v1_headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

        def v1_body(*image_parts: dict) -> bytes:
            # Encoded once: what a client spends to send it is not the server's cost.
            content = [{"type": "text", "text": "bench"}, *image_parts]
            body = {"model": "openai", "messages": [{"role": "user", "content": content}]}
            return json.dumps(body).encode()

        data_url = "data:image/png;base64," + base64.b64encode(image).decode()
        v1_text = v1_body()
        v1_image = v1_body({"type": "image_url", "image_url": {"url": data_url}})

        def v1_turn(body: bytes):
            response = client.post("/v1/chat/completions", headers=v1_headers, data=body)
            assert response.status_code == 200, response.json

        def text_turn():
            body = {"content": "bench", "model": "openai"}
            assert (
                client.post("/api/ai_chat/request", headers=headers, json=body).status_code == 200
            )

        # Encoded once: what a client spends to send it is not the server's cost.
        boundary, form = encode_multipart({"file": FileStorage(io.BytesIO(image), "a.png")})
        form_type = f"multipart/form-data; boundary={boundary}"

        def upload() -> int:
            response = client.post(
                "/api/ai_chat/attachments", headers=headers, data=form, content_type=form_type
            )
            assert response.status_code == 201, response.json
            return response.json["id"]

        tiny_boundary, tiny_form = encode_multipart(
            {"file": FileStorage(io.BytesIO(png((1, 1))), "a.png")}
        )

        def tiny_upload():
            response = client.post(
                "/api/ai_chat/attachments",
                headers=headers,
                data=tiny_form,
                content_type=f"multipart/form-data; boundary={tiny_boundary}",
            )
            assert response.status_code == 201, response.json

        def image_turn():
            body = {"content": "bench", "model": "openai", "attachment_ids": [upload()]}
            assert (
                client.post("/api/ai_chat/request", headers=headers, json=body).status_code == 200
            )

        def store_bytes():
            with app.app_context(), db.engine.begin() as connection:
                connection.execute(text("INSERT INTO bench_blobs (data) VALUES (:d)"), {"d": image})
            with app.app_context(), db.engine.connect() as connection:
                connection.execute(text("SELECT data FROM bench_blobs LIMIT 1")).scalar()
                connection.commit()

        session = requests.Session()

        def send_bytes():
            # The least a turn could do: the base64 joined into the JSON text as it is (it
            # needs no escaping), not escaped by json.dumps character by character.
            encoded = base64.b64encode(image)
            head, tail = json.dumps(
                {
                    "model": "m",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "bench"},
                                {"type": "image_url", "image_url": {"url": "@"}},
                            ],
                        }
                    ],
                }
            ).split('"@"')
            body = b"".join(
                (head.encode(), b'"data:image/png;base64,', encoded, b'"', tail.encode())
            )
            session.post(
                fake.url + "/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=10,
            )

        def check():
            inspect(image, 25_000_000)

        def receive():
            # Into memory, as the app receives an upload of known length: the least it costs.
            environ = EnvironBuilder(method="POST", data=form, content_type=form_type).get_environ()
            _, _, files = parse_form_data(environ, stream_factory=lambda *_, **__: io.BytesIO())
            files["file"].stream.getvalue()
            files["file"].close()

        rows = medians_ms(
            {
                "text turn": text_turn,
                "upload + turn with the image": image_turn,
                "of which the upload alone": upload,
                "an upload of a 1×1 PNG (an upload's own request)": tiny_upload,
                "floor: receive the upload (multipart parsed)": receive,
                "floor: store + read back the bytes": store_bytes,
                "floor: send them base64 in JSON to the provider": send_bytes,
                "the upload's check (its structure; size from the header)": check,
                "/v1 completion, text": lambda: v1_turn(v1_text),
                "/v1 completion, the image inline (data: URL)": lambda: v1_turn(v1_image),
            },
            args.samples,
        )
        logging.shutdown()
    fake.close()

    added = rows["upload + turn with the image"] - rows["text turn"]
    floor = sum(value for name, value in rows.items() if name.startswith("floor"))
    print(f"image: {len(image):,} bytes PNG")
    print("| measured | median ms |")
    print("|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.1f} |")
    print(f"| **the image adds** (upload + turn with it - text turn) | **{added:.1f}** |")
    print(f"| **floor** (receive + store + send) | **{floor:.1f}** |")
    check = rows["the upload's check (its structure; size from the header)"]
    print(f"| floor + the upload's check | {floor + check:.1f} |")
    inline = rows["/v1 completion, the image inline (data: URL)"] - rows["/v1 completion, text"]
    print(f"| **the image adds inline on /v1** (with it - text) | **{inline:.1f}** |")


if __name__ == "__main__":
    main()
