"""A real HTTP server on 127.0.0.1 that answers like the LLM providers do.

It records every request (path, headers, JSON body) and answers each in the wire format its path
names: OpenAI chat completions (`/chat/completions`), Anthropic (`/v1/messages`), Gemini
(`/models/{model}:generateContent`) and Ollama (`/api/chat`), and each one's embeddings API
(tests/fake_embeddings.py). Tests queue other answers (errors, bad bodies, slow replies) with
`reply()`. Streams are framed in chunks, or (`framing=CLOSE`) end when the connection closes, as
servers built on Python's http.server send them.
"""

import json
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests import fake_embeddings


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict | None
    at: float
    client_port: int = 0  # the same port twice in a row: the client reused its connection
    raw: bytes = b""  # the body as received


CHUNKED, CLOSE = "chunked", "close"  # a stream's framing


@dataclass
class Reply:
    status: int = 200
    body: dict | bytes | None = None  # None: the wire format's normal answer
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # A streamed answer: these byte chunks, `gap` seconds apart (None: the normal stream).
    chunks: list[bytes] | None = None
    gap: float = 0.0
    # Send only the first half of the body, then hang up (a connection cut mid-reply).
    cut: bool = False
    # Answer only once this is set (a test holds the answer back, then releases it).
    hold: threading.Event | None = None
    # How a stream is framed: CHUNKED (Transfer-Encoding: chunked), or CLOSE (no length and no
    # chunks: the body ends when the server closes the connection, as http.server-based and
    # some self-hosted servers send it).
    framing: str = CHUNKED
    # A stream holds its last chunk back until this is set (at most `wait` s): a test sees what
    # reached the client while the provider had not finished.
    pause: threading.Event | None = None
    # Set once a stream's last byte is sent.
    finished: threading.Event = field(default_factory=threading.Event)
    wait: float = 10.0  # the longest `hold` and `pause` hold an answer back


# --- streams, as each provider sends them ------------------------------------------------


def sse(data, event=None) -> bytes:
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {body}\n\n".encode()


def chat_body(model="gpt-4.1-mini", **message) -> dict:
    """An OpenAI chat completion whose message has `message`'s fields."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant"} | message, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def chunk(delta=None, finish=None, model="m", **extra) -> bytes:
    """One record of an OpenAI chat completion stream."""
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model}
    return sse(
        body | {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]} | extra
    )


def openai_stream(pieces, model, *, usage=(11, 7), groq=False, openrouter=False) -> list[bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    chunks = [b": OPENROUTER PROCESSING\n\n"] if openrouter else []
    chunks.append(
        sse(base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    )
    for piece in pieces:
        chunks.append(sse(base | {"choices": [{"index": 0, "delta": {"content": piece}}]}))
    last = base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    counts = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
    if groq:
        last["x_groq"] = {"usage": counts}
        chunks.append(sse(last))
    else:
        chunks.append(sse(last))
        chunks.append(sse(base | {"choices": [], "usage": counts}))
    chunks.append(sse("[DONE]"))
    return chunks


def anthropic_stream(pieces, model, *, usage=(12, 8)) -> list[bytes]:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": usage[0], "output_tokens": 1},
        },
    }
    chunks = [
        sse(start, "message_start"),
        sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
        sse({"type": "ping"}, "ping"),
    ]
    for piece in pieces:
        chunks.append(
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
                "content_block_delta",
            )
        )
    chunks += [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage[1]},
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return chunks


def gemini_stream(pieces, model, *, usage=(13, 9)) -> list[bytes]:
    chunks = []
    for n, piece in enumerate(pieces):
        chunk = {
            "candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}],
            "modelVersion": model,
        }
        if n == len(pieces) - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"
            chunk["usageMetadata"] = {
                "promptTokenCount": usage[0],
                "candidatesTokenCount": usage[1],
                "totalTokenCount": sum(usage),
            }
        chunks.append(sse(chunk))
    return chunks


def ollama_stream(pieces, model, *, usage=(14, 10)) -> list[bytes]:
    line = {"model": model, "created_at": "2026-11-26T10:00:00Z"}
    chunks = [
        (
            json.dumps(line | {"message": {"role": "assistant", "content": p}, "done": False})
            + "\n"
        ).encode()
        for p in pieces
    ]
    chunks.append(
        (
            json.dumps(
                line
                | {
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "stop",
                    "prompt_eval_count": usage[0],
                    "eval_count": usage[1],
                }
            )
            + "\n"
        ).encode()
    )
    return chunks


def normal_stream(
    path: str, request: dict, pieces=("Hello", " from", " the stream")
) -> list[bytes]:
    if path.endswith("/chat/completions"):
        return openai_stream(
            list(pieces),
            request["model"],
            openrouter="/api/v1/" in path,
            groq="/openai/v1/" in path,
        )
    if path.endswith("/v1/messages"):
        return anthropic_stream(list(pieces), request["model"])
    if ":streamGenerateContent" in path:
        model = path.rsplit("/", 1)[-1].split(":")[0]
        return gemini_stream(list(pieces), model)
    if path.endswith("/api/chat"):
        return ollama_stream(list(pieces), request["model"])
    raise AssertionError(f"fake provider: no stream format for {path}")


def openai_answer(request: dict) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": request["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"Hello from {request['model']}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def anthropic_answer(request: dict) -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": [{"type": "text", "text": f"Hello from {request['model']}"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 8},
    }


def gemini_answer(model: str) -> dict:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": f"Hello from {model}"}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 13, "candidatesTokenCount": 9, "totalTokenCount": 22},
        "modelVersion": model,
    }


def ollama_answer(request: dict) -> dict:
    return {
        "model": request["model"],
        "created_at": "2026-11-26T10:00:00Z",
        "message": {"role": "assistant", "content": f"Hello from {request['model']}"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 14,
        "eval_count": 10,
    }


LISTED = ["listed-model-a", "listed-model-b"]  # what every provider says it offers


def model_listing(path: str, headers) -> dict:
    """GET /models and its kin, as each provider answers it."""
    if path.startswith("/api/tags"):
        return {
            "models": [
                {"name": f"{m}:latest", "model": f"{m}:latest", "size": 1, "details": {}}
                for m in LISTED
            ]
        }
    if "x-goog-api-key" in {k.lower() for k in headers}:
        return {
            "models": [
                {"name": f"models/{m}", "supportedGenerationMethods": ["generateContent"]}
                for m in LISTED
            ]
            + [{"name": "models/embedding-x", "supportedGenerationMethods": ["embedContent"]}]
        }
    if "x-api-key" in {k.lower() for k in headers}:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01"}
            for m in LISTED
        ]
        return {"data": data, "has_more": False, "first_id": LISTED[0], "last_id": LISTED[-1]}
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 1, "owned_by": "x"} for m in LISTED],
    }


def normal_answer(path: str, request: dict) -> dict:
    if path.endswith("/chat/completions"):
        return openai_answer(request)
    if path.endswith("/v1/messages"):
        return anthropic_answer(request)
    if path.endswith(":generateContent"):
        return gemini_answer(path.rsplit("/", 1)[-1].removesuffix(":generateContent"))
    if path.endswith("/api/chat"):
        return ollama_answer(request)
    raise AssertionError(f"fake provider: no wire format for {path}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm holds the
    # body back until the client's delayed ACK, 40 ms on Linux.
    disable_nagle_algorithm = True

    def do_POST(self):
        fake: FakeProvider = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        fake.record(
            Recorded(
                self.path,
                dict(self.headers.items()),
                body,
                time.monotonic(),
                self.client_address[1],
                raw,
            )
        )
        reply = model_reply(self.path, body, fake, fake.next_reply())
        if reply.hold is not None:
            reply.hold.wait(timeout=reply.wait)
        if reply.delay or fake.default_delay:
            time.sleep(reply.delay or fake.default_delay)
        if reply.status == 200 and reply.body is None and fake_embeddings.serves(self.path):
            status, payload = fake_embeddings.answer(
                self.path, self.headers, body, fake.embedding_dimensions
            )
            reply = replace(reply, status=status, body=payload)
        streaming = (body or {}).get("stream") or ":streamGenerateContent" in self.path
        if reply.chunks is not None or (reply.status == 200 and reply.body is None and streaming):
            # A stream, or a plain answer sent in chunks (a trickle).
            chunks = reply.chunks or normal_stream(self.path, body, fake.stream_pieces)
            self._stream(fake, chunks, reply.gap or fake.stream_gap, reply)
            return
        if reply.body is None:
            payload = json.dumps(normal_answer(self.path, body or {})).encode()
        elif isinstance(reply.body, bytes):
            payload = reply.body
        else:
            payload = json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.cut:
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a deadline test)

    def do_GET(self):
        """Model listings, in each provider's shape (or a queued GET reply)."""
        fake: FakeProvider = self.server.fake
        fake.record_listing(Recorded(self.path, dict(self.headers.items()), None, time.monotonic()))
        reply = fake.next_reply("GET")
        if reply.delay:
            time.sleep(reply.delay)
        if reply.body is None:
            payload = json.dumps(model_listing(self.path, self.headers)).encode()
        else:
            payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body)
            payload = payload if isinstance(payload, bytes) else payload.encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self, fake, chunks, gap, reply):
        sent = 0
        chunked = reply.framing == CHUNKED
        try:
            self.send_response(reply.status)
            ndjson = self.path.endswith("/api/chat")
            streaming = b"data:" in b"".join(chunks[:2]) or ndjson
            self.send_header(
                "Content-Type",
                "application/x-ndjson"
                if ndjson
                else ("text/event-stream" if streaming else "application/json"),
            )
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for chunk in chunks:
                if sent and gap:
                    time.sleep(gap)
                if reply.pause is not None and sent == len(chunks) - 1:
                    reply.pause.wait(timeout=reply.wait)
                self.wfile.write(
                    f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
                )
                self.wfile.flush()
                sent += 1
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            reply.finished.set()
        except (BrokenPipeError, ConnectionResetError):
            if sent < len(chunks):
                fake.disconnected.set()  # the client hung up before the stream's end
            self.close_connection = True

    def log_message(self, format, *args):
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # hundreds of calls may connect at once (tests/test_scale.py)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up
            super().handle_error(request, client_address)


class FakeProvider:
    def __init__(self, stream_pieces=("Hello", " from", " the stream"), stream_gap=0.0):
        self.stream_pieces = stream_pieces  # what a normal stream says, piece by piece
        self.stream_gap = stream_gap  # seconds between a normal stream's chunks
        self.default_delay = 0.0  # seconds before every answer not queued with its own
        self.embedding_dimensions = fake_embeddings.DIMENSIONS  # unless a request asks
        self.calls: list[FakeCall] | None = None  # the calls made when tools are given
        self.fragments = 1  # the pieces a streamed call's arguments come in
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.fake = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.listings: list[Recorded] = []  # GET requests for model lists
        self._replies: list[Reply] = []
        self._get_replies: list[Reply] = []
        self.disconnected = threading.Event()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reply(
        self,
        status=200,
        body=None,
        headers=None,
        delay=0.0,
        times=1,
        chunks=None,
        gap=0.0,
        cut=False,
        method="POST",
        hold=None,
        framing=CHUNKED,
        pause=None,
        wait=10.0,
    ) -> Reply:
        """Queue the next `times` answers to `method` (after them, the normal answer again)."""
        queue = self._get_replies if method == "GET" else self._replies
        queued = Reply(status, body, headers or {}, delay, chunks, gap, cut, hold, framing, pause)
        queued.wait = wait
        with self._lock:
            queue += [queued] * times
        return queued

    def next_reply(self, method="POST") -> Reply:
        queue = self._get_replies if method == "GET" else self._replies
        with self._lock:
            return queue.pop(0) if queue else Reply()

    def record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def record_listing(self, request: Recorded) -> None:
        with self._lock:
            self.listings.append(request)

    def reset(self):
        with self._lock:
            self.requests.clear()
            self.listings.clear()
            self._replies.clear()
            self._get_replies.clear()
            self.disconnected.clear()
            self.embedding_dimensions = fake_embeddings.DIMENSIONS
            self.calls, self.fragments = None, 1

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- tools, structured output and images, as each provider answers them -------------------
#
# A request whose queued reply is the normal one is answered like a model would: with tools it
# may call (and a last message from the user), it calls them; asked for JSON, it answers JSON;
# given tool results, it says what they said; given images, it counts them. Each in its
# provider's own shapes, whole and streamed. A tool whose parameters schema has a `type` that
# is no JSON type gets the provider's own error for a bad schema. Tests choose the calls with
# FakeProvider.calls and the number of fragments a streamed call's arguments come in with
# FakeProvider.fragments.

JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS1maXJzdC1jYWxs"  # what Gemini puts on a turn's first call


def sent(fake: "FakeProvider", n: int = -1) -> dict:
    """The JSON body of the fake's `n`th request (by default its last)."""
    return fake.requests[n].body


@dataclass(frozen=True)
class FakeCall:
    name: str
    arguments: str  # JSON text, sent as such (OpenAI) or as the object it is (the others)
    id: str | None = None  # None: the fake's own (`call_0`, `toolu_0`...; none for Gemini, Ollama)


def provider_of(path: str) -> str | None:
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/v1/messages"):
        return "anthropic"
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return "gemini"
    if path.endswith("/api/chat"):
        return "ollama"
    return None


def model_reply(path: str, request: dict | None, fake: "FakeProvider", queued: Reply) -> Reply:
    """The queued reply, or, when it is the normal one, the answer a model would give to a
    request with tools, a JSON format, tool results or images."""
    kind = provider_of(path)
    if queued.body is not None or queued.chunks is not None or queued.status != 200:
        return queued
    if kind is None or not isinstance(request, dict):
        return queued
    looked = READERS[kind](path, request)
    if looked is None:
        return queued
    bad = looked.get("bad_schema")
    if bad:
        status, body = SCHEMA_ERRORS[kind](bad)
        return replace(queued, status=status, body=body)
    calls = (fake.calls or [FakeCall(looked["tools"][0], "{}")]) if looked["call"] else []
    text = "" if calls else answer_text(looked, model_of(path, request))
    streaming = bool(request.get("stream")) or ":streamGenerateContent" in path
    writer = STREAM_WRITERS[kind] if streaming else ANSWER_WRITERS[kind]
    made = writer(model_of(path, request), text, calls, fake.fragments)
    if streaming:
        return replace(queued, chunks=made)
    return replace(queued, body=made)


def model_of(path: str, request: dict) -> str:
    if "/models/" in path:
        return path.rsplit("/", 1)[-1].split(":")[0]
    return str(request.get("model"))


def answer_text(looked: dict, model: str) -> str:
    if looked["results"]:
        said = "Tool said: " + " | ".join(looked["results"])
    else:
        said = f"Hello from {model}"
        if looked["images"]:
            said += f", I see {looked['images']} image(s)"
    if looked["json"]:
        return json.dumps({"answer": said})
    return said


def _fragments(text: str, count: int) -> list[str]:
    count = max(1, min(count, len(text))) if text else 1
    size = -(-len(text) // count) if text else 0
    return [text[n : n + size] for n in range(0, len(text), size)] if text else [""]


def _bad(schemas) -> str | None:
    for name, schema in schemas:
        if isinstance(schema, dict) and "type" in schema and schema["type"] not in JSON_TYPES:
            return name
    return None


# What each provider's request asks: {"tools": names, "call": whether to call, "json",
# "results": tool results' texts, "images": how many, "bad_schema": a tool's name}, or None
# when it asks for none of these.


def _openai_read(path: str, request: dict) -> dict | None:
    messages = request.get("messages") or []
    tools = [t.get("function") or {} for t in request.get("tools") or []]
    choice = request.get("tool_choice")
    names = [t.get("name") for t in tools]
    if isinstance(choice, dict):
        names = [(choice.get("function") or {}).get("name")]
    last = messages[-1] if messages else {}
    images = sum(
        1
        for m in messages
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") == "image_url"
    )
    results = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        results.insert(0, str(m.get("content")))
    fmt = (request.get("response_format") or {}).get("type") in ("json_object", "json_schema")
    looked = {
        "tools": names,
        "call": bool(tools) and choice != "none" and last.get("role") == "user",
        "json": fmt,
        "results": results,
        "images": images,
        "bad_schema": _bad((t.get("name"), t.get("parameters")) for t in tools),
    }
    return looked if tools or fmt or results or images else None


def _anthropic_read(path: str, request: dict) -> dict | None:
    messages = request.get("messages") or []
    tools = request.get("tools") or []
    choice = request.get("tool_choice") or {}
    names = [t.get("name") for t in tools]
    if choice.get("type") == "tool":
        names = [choice.get("name")]
    last = messages[-1] if messages else {}
    blocks = last.get("content") if isinstance(last.get("content"), list) else []
    results = [str(b.get("content", "")) for b in blocks if b.get("type") == "tool_result"]
    images = sum(
        1
        for m in messages
        if isinstance(m.get("content"), list)
        for b in m["content"]
        if b.get("type") == "image"
    )
    fmt = "output_config" in request or "JSON object" in str(request.get("system"))
    looked = {
        "tools": names,
        "call": bool(tools) and choice.get("type") != "none" and not results,
        "json": fmt,
        "results": results,
        "images": images,
        "bad_schema": _bad((t.get("name"), t.get("input_schema")) for t in tools),
    }
    return looked if tools or fmt or results or images else None


def _gemini_read(path: str, request: dict) -> dict | None:
    contents = request.get("contents") or []
    declarations = [
        d for t in request.get("tools") or [] for d in t.get("functionDeclarations") or []
    ]
    config = (request.get("toolConfig") or {}).get("functionCallingConfig") or {}
    names = config.get("allowedFunctionNames") or [d.get("name") for d in declarations]
    parts = (contents[-1] if contents else {}).get("parts") or []
    results = [
        str((p["functionResponse"].get("response") or {}).get("output"))
        for p in parts
        if "functionResponse" in p
    ]
    images = sum(1 for c in contents for p in c.get("parts") or [] if "inlineData" in p)
    fmt = (request.get("generationConfig") or {}).get("responseMimeType") == "application/json"
    looked = {
        "tools": names,
        "call": bool(declarations) and config.get("mode") != "NONE" and not results,
        "json": fmt,
        "results": results,
        "images": images,
        "bad_schema": _bad((d.get("name"), d.get("parametersJsonSchema")) for d in declarations),
    }
    return looked if declarations or fmt or results or images else None


def _ollama_read(path: str, request: dict) -> dict | None:
    messages = request.get("messages") or []
    tools = [t.get("function") or {} for t in request.get("tools") or []]
    last = messages[-1] if messages else {}
    results = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        results.insert(0, str(m.get("content")))
    images = sum(len(m.get("images") or []) for m in messages)
    fmt = "format" in request
    looked = {
        "tools": [t.get("name") for t in tools],
        "call": bool(tools) and last.get("role") == "user",
        "json": fmt,
        "results": results,
        "images": images,
        "bad_schema": _bad((t.get("name"), t.get("parameters")) for t in tools),
    }
    return looked if tools or fmt or results or images else None


READERS = {
    "openai": _openai_read,
    "anthropic": _anthropic_read,
    "gemini": _gemini_read,
    "ollama": _ollama_read,
}

# Each provider's own error for a tool whose schema it cannot read.
SCHEMA_ERRORS = {
    "openai": lambda name: (
        400,
        {
            "error": {
                "message": f"Invalid schema for function '{name}': schema must be a JSON "
                "Schema of 'type: \"object\"', got 'type: \"banana\"'.",
                "type": "invalid_request_error",
                "param": "tools[0].function.parameters",
                "code": "invalid_function_parameters",
            }
        },
    ),
    "anthropic": lambda name: (
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "tools.0.custom.input_schema: JSON schema is invalid. It must match "
                "JSON Schema draft 2020-12 (https://json-schema.org/draft/2020-12).",
            },
        },
    ),
    "gemini": lambda name: (
        400,
        {
            "error": {
                "code": 400,
                "message": 'Invalid JSON payload received. Unknown type "banana" at '
                "'tools[0].function_declarations[0].parameters_json_schema'",
                "status": "INVALID_ARGUMENT",
            }
        },
    ),
    "ollama": lambda name: (400, {"error": f"invalid tool schema for {name}: unknown type"}),
}


def _call_id(call: FakeCall, n: int, prefix: str) -> str:
    return call.id if call.id is not None else f"{prefix}{n}"


def _openai_answer(model, text, calls, fragments) -> dict:
    message: dict = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": _call_id(c, n, "call_"),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for n, c in enumerate(calls)
        ]
    body = chat_body(model, **message)
    body["choices"][0]["finish_reason"] = "tool_calls" if calls else "stop"
    return body


def _openai_stream(model, text, calls, fragments) -> list[bytes]:
    chunks = [chunk({"role": "assistant", "content": None if calls else ""}, model=model)]
    if text:
        chunks += [chunk({"content": piece}, model=model) for piece in _fragments(text, 3)]
    for n, call in enumerate(calls):
        first = {
            "index": n,
            "id": _call_id(call, n, "call_"),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [first]}, model=model))
        for piece in _fragments(call.arguments, fragments):
            later = {"index": n, "function": {"arguments": piece}}
            chunks.append(chunk({"tool_calls": [later]}, model=model))
    chunks.append(chunk(finish="tool_calls" if calls else "stop", model=model))
    counts = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model}
    chunks.append(sse(base | {"choices": [], "usage": counts}))
    chunks.append(sse("[DONE]"))
    return chunks


def _anthropic_answer(model, text, calls, fragments) -> dict:
    body = anthropic_answer({"model": model})
    body["content"] = ([{"type": "text", "text": text}] if text else []) + [
        {
            "type": "tool_use",
            "id": _call_id(c, n, "toolu_"),
            "name": c.name,
            "input": json.loads(c.arguments or "{}"),
        }
        for n, c in enumerate(calls)
    ]
    body["stop_reason"] = "tool_use" if calls else "end_turn"
    return body


def _anthropic_stream(model, text, calls, fragments) -> list[bytes]:
    whole = anthropic_stream(_fragments(text, 3) if text else [], model)
    message_start, text_start, ping = whole[:3]
    events = [message_start, ping]
    if text:
        events += [text_start, *whole[3:-2]]  # the text block: start, deltas, stop
    for n, call in enumerate(calls):
        index = n + (1 if text else 0)
        block = {
            "type": "tool_use",
            "id": _call_id(call, n, "toolu_"),
            "name": call.name,
            "input": {},
        }
        events.append(
            sse(
                {"type": "content_block_start", "index": index, "content_block": block},
                "content_block_start",
            )
        )
        # A call with no arguments: one empty fragment, as Anthropic streams it.
        for piece in _fragments(call.arguments, fragments) if call.arguments != "{}" else [""]:
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(
                sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            )
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    stop = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 8},
    }
    return [*events, sse(stop, "message_delta"), whole[-1]]


def _gemini_part(call: FakeCall, n: int) -> dict:
    function = {"name": call.name, "args": json.loads(call.arguments or "{}")}
    if call.id is not None:
        function["id"] = call.id
    part: dict = {"functionCall": function}
    if n == 0:
        part["thoughtSignature"] = SIGNATURE
    return part


def _gemini_answer(model, text, calls, fragments) -> dict:
    body = gemini_answer(model)
    parts = ([{"text": text}] if text else []) + [_gemini_part(c, n) for n, c in enumerate(calls)]
    body["candidates"][0]["content"]["parts"] = parts
    return body


def _gemini_stream(model, text, calls, fragments) -> list[bytes]:
    if not calls:
        return gemini_stream(_fragments(text, 3), model)
    chunks = []
    for n, call in enumerate(calls):
        piece = {"candidates": [{"content": {"role": "model", "parts": [_gemini_part(call, n)]}}]}
        chunks.append(piece | {"modelVersion": model})
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    chunks[-1]["usageMetadata"] = {
        "promptTokenCount": 13,
        "candidatesTokenCount": 9,
        "totalTokenCount": 22,
    }
    return [sse(c) for c in chunks]


def _ollama_calls(calls) -> list[dict]:
    return [
        {"function": {"name": c.name, "arguments": json.loads(c.arguments or "{}")}} for c in calls
    ]


def _ollama_answer(model, text, calls, fragments) -> dict:
    body = ollama_answer({"model": model})
    body["message"]["content"] = text
    if calls:
        body["message"]["tool_calls"] = _ollama_calls(calls)
    return body


def _ollama_stream(model, text, calls, fragments) -> list[bytes]:
    chunks = ollama_stream(_fragments(text, 3) if text else [], model)
    if calls:
        line = {"model": model, "created_at": "2026-11-26T10:00:00Z", "done": False}
        message = {"role": "assistant", "content": "", "tool_calls": _ollama_calls(calls)}
        chunks.insert(-1, (json.dumps(line | {"message": message}) + "\n").encode())
    return chunks


ANSWER_WRITERS = {
    "openai": _openai_answer,
    "anthropic": _anthropic_answer,
    "gemini": _gemini_answer,
    "ollama": _ollama_answer,
}
STREAM_WRITERS = {
    "openai": _openai_stream,
    "anthropic": _anthropic_stream,
    "gemini": _gemini_stream,
    "ollama": _ollama_stream,
}
