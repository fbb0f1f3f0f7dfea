"""A fake OpenAI-compatible model on 127.0.0.1, in a process of its own, for bench/litellm.py.

`POST /v1/chat/completions` answers in OpenAI's wire format (tests/fake_provider.py's), whole or
streamed. The model named sets the latency: a name ending in `-<n>ms` (`slow-100ms`) answers
after n milliseconds, any other at once; a stream sends its pieces `--gap` seconds apart. The
port is printed on the first line of stdout; the server runs until stdin closes.

    .venv/bin/python bench/upstream.py [--gap 0.05]
"""

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_provider import openai_answer, openai_stream  # noqa: E402

LATENCY = re.compile(r"-(\d+)ms$")
PIECES = tuple(f"p{n} " for n in range(10))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # hundreds of connections may arrive at once

    def handle_error(self, request, client_address):
        pass  # a client that hung up (wrk stopping mid-request)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the body is not held back for the client's delayed ACK

    def do_POST(self):
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (wrk's end)

    def _answer(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        model = str(body.get("model", ""))
        latency = LATENCY.search(model)
        if latency:
            time.sleep(int(latency.group(1)) / 1000)
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n, chunk in enumerate(openai_stream(PIECES, model)):
                if n and self.server.gap:
                    time.sleep(self.server.gap)
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        payload = json.dumps(openai_answer(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between stream pieces")
    args = parser.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    server.gap = args.gap
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the parent closes it (or exits)
    server.shutdown()


if __name__ == "__main__":
    main()
