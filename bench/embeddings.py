"""What PolyGenix adds to embeddings of 2,048 short strings, per request and per provider batch.

Starts the fake provider (1,536-dimension vectors, answered at once) and PolyGenix under the
project's gunicorn.conf.py on a fresh SQLite database. For each case, one client in turn:

- direct: the very requests PolyGenix sends the provider for those 2,048 strings (the same
  batches, built by the same wire format, as many at once), each body read whole;
- through: POST /v1/embeddings with the 2,048 strings and an API key, the body read whole.

--samples alternating rounds (direct, through, direct...); medians of each side, and PolyGenix's
added time (through - direct), per request and per batch sent to the provider.

    .venv/bin/python bench/embeddings.py
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polygenix.providers.embedder import CONCURRENT_BATCHES, EMBEDDINGS  # noqa: E402
from polygenix.providers.embedding_wire import batches  # noqa: E402
from tests.fake_provider import FakeProvider  # noqa: E402
from tests.gunicorn_server import gunicorn, register_over_http  # noqa: E402

TEXTS = [f"short string number {n}" for n in range(2048)]
DIMENSIONS = 1536
# name, encoding_format, how the provider is reached (base path, headers)
CASES = [
    ("openai", "float", "/v1", {"Authorization": "Bearer bench-openai"}),
    ("openai", "base64", "/v1", {"Authorization": "Bearer bench-openai"}),
    ("mistral", "float", "/v1", {"Authorization": "Bearer bench-mistral"}),
    ("gemini", "float", "/v1beta", {"x-goog-api-key": "bench-gemini"}),
    ("gemini", "base64", "/v1beta", {"x-goog-api-key": "bench-gemini"}),
    ("ollama", "float", "", {}),
]


def direct_call(pool, fake_url: str, name: str, encoding: str, base_path: str, headers: dict):
    """The requests PolyGenix sends for TEXTS, CONCURRENT_BATCHES at a time; how many."""
    definition = EMBEDDINGS[name]
    wire, model = definition.wire, definition.default_model
    runs = batches(TEXTS, wire)
    url = fake_url + base_path + wire.path(model)
    sessions = threading.local()

    def send(start: int, end: int) -> None:
        if not hasattr(sessions, "http"):
            sessions.http = requests.Session()
        payload = wire.build_payload(TEXTS[start:end], model, None, encoding)
        response = sessions.http.post(url, json=payload, headers=headers, timeout=60)
        assert response.status_code == 200, response.text[:300]

    def call():
        for future in [pool.submit(send, start, end) for start, end in runs]:
            future.result()

    return call, len(runs)


def through_call(http, base: str, key: str, name: str, encoding: str):
    body = {"model": name, "input": TEXTS, "encoding_format": encoding}
    headers = {"Authorization": f"Bearer {key}"}

    def call():
        response = http.post(base + "/v1/embeddings", json=body, headers=headers, timeout=60)
        assert response.status_code == 200, response.text[:300]
        assert len(response.content) > 2048 * 100

    return call


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15, help="alternating rounds per case")
    args = parser.parse_args()

    fake = FakeProvider()
    fake.embedding_dimensions = DIMENSIONS
    settings = {
        "OPENAI_API_KEY": "bench-openai",
        "OPENAI_BASE_URL": fake.url + "/v1",
        "MISTRAL_API_KEY": "bench-mistral",
        "MISTRAL_BASE_URL": fake.url + "/v1",
        "GEMINI_API_KEY": "bench-gemini",
        "GEMINI_BASE_URL": fake.url + "/v1beta",
        "OLLAMA_BASE_URL": fake.url,
        "CHAT_RATE_LIMIT": "100000000/minute",  # the time is measured, not a limit
    }
    rows = []
    with (
        tempfile.TemporaryDirectory() as folder,
        gunicorn(Path(folder), settings) as (base, _),
        requests.Session() as http,
        ThreadPoolExecutor(CONCURRENT_BATCHES) as pool,
    ):
        headers = register_over_http(base, "bench@example.com", "Bench")
        key = http.post(base + "/api/keys", headers=headers, json={"name": "bench"}, timeout=30)
        key = key.json()["key"]
        for name, encoding, base_path, provider_headers in CASES:
            direct, sent = direct_call(pool, fake.url, name, encoding, base_path, provider_headers)
            through = through_call(http, base, key, name, encoding)
            direct(), through()  # warm: connections, caches, the fake's vectors
            times = {"direct": [], "through": []}
            for _ in range(args.samples):
                times["direct"].append(timed(direct))
                times["through"].append(timed(through))
            direct_ms = statistics.median(times["direct"])
            through_ms = statistics.median(times["through"])
            rows.append((name, encoding, sent, direct_ms, through_ms))
    fake.close()

    print(f"2,048 strings, {DIMENSIONS} dimensions, medians of {args.samples} alternating rounds")
    print(
        "| provider | encoding_format | batches | direct ms | through PolyGenix ms "
        "| added ms | added per batch ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, encoding, sent, direct_ms, through_ms in rows:
        added = through_ms - direct_ms
        print(
            f"| {name} | {encoding} | {sent} | {direct_ms:.1f} | {through_ms:.1f} "
            f"| {added:.1f} | {added / sent:.1f} |"
        )


if __name__ == "__main__":
    main()
