"""Where a streamed reply's time to first delta goes, client and server on one clock.

Starts the fake provider and PolyGenix under the project's gunicorn.conf.py (as
bench/streaming.py does), with this module as the app: each worker wraps a few functions of
gunicorn, PolyGenix and the libraries it calls to note when each step of a request began or
ended, on CLOCK_MONOTONIC, which every process of the machine shares. The client notes when it
sent each request and got the first delta, the fake provider when it got the request. Prints
the median of each step, in ms from the client's send, over --samples streams (one at a time,
each after a direct request to the fake provider, as bench/streaming.py takes them).

    .venv/bin/python bench/timeline.py --samples 40

The wrappers cost a little themselves: read the steps' sizes, not the total.
"""

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

MARKS_FILE = "POLYGENIX_TIMELINE_FILE"
_marks: dict[str, float] = {}


def _mark(name: str) -> None:
    _marks.setdefault(name, time.monotonic())


def _wrap(owner, attribute: str, name: str, *, end: bool = False) -> None:
    """Mark when `owner.attribute` is first called in a request (and, with `end`, returns)."""
    original = getattr(owner, attribute)

    def wrapped(*args, **kwargs):
        _mark(name)
        try:
            return original(*args, **kwargs)
        finally:
            if end:
                _mark(name + " done")

    setattr(owner, attribute, wrapped)


def _instrumented_app():
    """PolyGenix with marks, written to the MARKS_FILE once each bench request is over."""
    import gunicorn.workers.gthread as gthread
    import requests
    from flask_jwt_extended import view_decorators

    from wsgi import app

    accept = gthread.ThreadWorker.accept

    def accepted(self, listener):  # a new connection: a new request's marks
        _marks.clear()
        _mark("gunicorn accepts")
        return accept(self, listener)

    gthread.ThreadWorker.accept = accepted
    _wrap(gthread.ThreadWorker, "handle", "worker thread takes it")
    _wrap(gthread.ThreadWorker, "handle_request", "request parsed")
    app.before_request_funcs.setdefault(None, []).insert(0, lambda: _mark("Flask before_request"))
    _wrap(view_decorators, "_decode_jwt_from_request", "JWT check", end=True)
    tokens = importlib.import_module("polygenix.auth.tokens")
    _wrap(tokens, "user_and_revocation", "user and revocation query", end=True)
    _wrap(importlib.import_module("polygenix.limits"), "_check", "rate limit", end=True)
    _wrap(
        importlib.import_module("polygenix.chat.prepare"),
        "find_session",
        "session lookup",
        end=True,
    )
    _wrap(importlib.import_module("polygenix.chat.turn"), "prepare", "view")
    _wrap(importlib.import_module("polygenix.providers.client").HTTPProvider, "stream", "open")
    _wrap(requests.Session, "send", "requests sends")
    streaming = importlib.import_module("polygenix.chat.streaming")
    sse = streaming.sse

    def first_delta(event, data):
        if event == "delta":
            _mark("first delta relayed")
        return sse(event, data)

    streaming.sse = first_delta
    inner = app.wsgi_app

    def noted(environ, start_response):
        sample = environ.get("HTTP_X_BENCH_SAMPLE")
        body = inner(environ, start_response)
        if not sample:
            return body

        def then_write():
            try:
                yield from body
            finally:
                if hasattr(body, "close"):
                    body.close()
                with open(os.environ[MARKS_FILE], "a") as out:
                    out.write(json.dumps({"sample": int(sample), **_marks}) + "\n")

        return then_write()

    app.wsgi_app = noted
    return app


if os.environ.get(MARKS_FILE):  # loaded by a gunicorn worker
    app = _instrumented_app()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--workers", default="2")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import requests

    import tests.gunicorn_server as served
    from bench.streaming import first_delta_direct, stream_once
    from tests.fake_provider import FakeProvider

    fake = FakeProvider(stream_pieces=tuple(f"p{n} " for n in range(20)), stream_gap=0.05)
    with tempfile.TemporaryDirectory() as folder:
        marks_file = Path(folder) / "marks.jsonl"
        settings = {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": fake.url + "/v1",
            "WEB_CONCURRENCY": args.workers,
            "GUNICORN_THREADS": "128",
            MARKS_FILE: str(marks_file),
        }
        serve = served.served
        served.served = lambda _app, env, ready: serve("bench.timeline:app", env, ready)
        client, direct = [], []
        with served.gunicorn(Path(folder), settings) as (base, _):
            token = requests.post(
                base + "/api/auth/register",
                json={"name": "Bench", "email": "bench@example.com", "password": "long enough"},
                timeout=10,
            ).json()["access_token"]
            for n in range(args.samples):
                direct.append(first_delta_direct(fake.url) * 1000)
                headers = {"Authorization": f"Bearer {token}", "X-Bench-Sample": str(n)}
                first: list[float] = []
                sent = time.monotonic()
                stream_once(base, headers, 10**6 + n, first)
                got = sent + first[0]
                client.append((sent, got, fake.requests[-1].at))
            time.sleep(0.5)  # the last stream's marks are written as it closes
        lines = [json.loads(line) for line in marks_file.read_text().splitlines()]
    fake.close()

    marks = {line.pop("sample"): line for line in lines}
    rows = []
    for n, (sent, got, provider_got) in enumerate(client):
        row = {name: (at - sent) * 1000 for name, at in marks[n].items()}
        row["provider gets the request"] = (provider_got - sent) * 1000
        row["client gets the first delta"] = (got - sent) * 1000
        rows.append(row)
    medians = {name: statistics.median(row[name] for row in rows) for name in rows[0]}
    print(f"| step (median of {args.samples}) | ms after the client sent |")
    print("|---|---|")
    for name, ms in sorted(medians.items(), key=lambda item: item[1]):
        print(f"| {name} | {ms:.2f} |")
    added = medians["client gets the first delta"] - statistics.median(direct)
    print(
        f"\nDirectly from the fake provider: {statistics.median(direct):.2f} ms; added {added:.2f}"
    )


if __name__ == "__main__":
    main()
