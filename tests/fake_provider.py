"""A real HTTP server on 127.0.0.1 that answers like the LLM providers do.

It records every request (path, headers, JSON body) and answers each in the wire format its path
names: OpenAI chat completions (`/chat/completions`), Anthropic (`/v1/messages`), Gemini
(`/models/{model}:generateContent`) and Ollama (`/api/chat`). Tests queue other answers (errors,
bad bodies, slow replies) with `reply()`.
"""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict | None
    at: float


@dataclass
class Reply:
    status: int = 200
    body: dict | bytes | None = None  # None: the wire format's normal answer
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


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

    def do_POST(self):
        fake: FakeProvider = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        fake.record(Recorded(self.path, dict(self.headers.items()), body, time.monotonic()))
        reply = fake.next_reply()
        if reply.delay:
            time.sleep(reply.delay)
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
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a deadline test)

    def log_message(self, format, *args):
        pass


class FakeProvider:
    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.fake = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self._replies: list[Reply] = []
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reply(self, status=200, body=None, headers=None, delay=0.0, times=1):
        """Queue the next `times` answers (after them, the normal answer again)."""
        with self._lock:
            self._replies += [Reply(status, body, headers or {}, delay)] * times

    def next_reply(self) -> Reply:
        with self._lock:
            return self._replies.pop(0) if self._replies else Reply()

    def record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def reset(self):
        with self._lock:
            self.requests.clear()
            self._replies.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
