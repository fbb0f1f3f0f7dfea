"""Incremental decoding of provider streams, apart from any HTTP.

Bytes arrive in chunks cut anywhere: in the middle of a line, of an event, or of a multi-byte UTF-8
character. Decoders buffer bytes and only decode complete lines (a newline byte never occurs inside
a UTF-8 multi-byte sequence, so cutting at newline bytes is always safe). Each wire format then
turns decoded records into `StreamEvent`s with its `parse_stream_record`.
"""

import json
from dataclasses import dataclass
from typing import Any, Protocol


class Decoder(Protocol):
    """Bytes in, the complete records they hold out (SSE records, JSON lines...)."""

    def feed(self, chunk: bytes) -> list[Any]: ...

    def close(self) -> list[Any]: ...


@dataclass(frozen=True)
class SSERecord:
    event: str | None
    data: str


class SSEDecoder:
    """Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html).

    With `bare_json`, a JSON object written outside the SSE framing (Gemini aborts a stream with
    a pretty-printed {"error": ...} over several lines) is decoded as a record of its own.
    """

    BARE_JSON_LIMIT = 65536

    def __init__(self, *, bare_json: bool = False):
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []
        self._bare_json = bare_json
        self._json: list[str] = []

    def feed(self, chunk: bytes) -> list[SSERecord]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        records = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if self._json or (self._bare_json and line.lstrip().startswith(("{", "["))):
                records += self._bare(line)
            elif not line:
                if self._data:
                    records.append(SSERecord(self._event, "\n".join(self._data)))
                self._event, self._data = None, []
            elif line.startswith(":"):
                continue  # a comment: keep-alives, OpenRouter's "PROCESSING"
            else:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "data":
                    self._data.append(value)
                elif field == "event":
                    self._event = value
        return records

    def _bare(self, line: str) -> list[SSERecord]:
        self._json.append(line)
        text = "\n".join(self._json)
        try:
            json.loads(text)
        except ValueError:
            if len(text) > self.BARE_JSON_LIMIT:
                raise ValueError("unframed text in the stream") from None
            return []  # more lines to come
        self._json = []
        return [SSERecord(None, text)]

    def close(self) -> list[SSERecord]:
        """Whatever a stream that ended without a final blank line left pending."""
        records = self.feed(b"\n") if self._buffer else []
        if self._json:
            raise ValueError("the stream ended inside a JSON object")
        if self._data:
            records.append(SSERecord(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        return records


class NDJSONDecoder:
    """Newline-delimited JSON (Ollama): one object per line."""

    def __init__(self):
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[dict]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def close(self) -> list[dict]:
        rest, self._buffer = self._buffer, b""
        return [json.loads(rest)] if rest.strip() else []
