"""A provider's HTTP format: the defaults most formats share, which each format overrides only
where it differs.

A format is pure: it builds paths, headers and payloads, and parses bodies, stream records and
error bodies. It never makes a request (see client.py).
"""

import json
from typing import Any

from .base import ChatMessage, Completion, StreamEvent
from .decoders import SSEDecoder, SSERecord


class WireFormat:
    # A stream that ends without the format's end marker ([DONE], message_stop, "done": true)
    # was cut short; a format without one says so here.
    ENDS_AT_EOF = False

    def path(self, model: str) -> str:
        raise NotImplementedError

    def stream_path(self, model: str) -> str:
        return self.path(model)

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def build_payload(self, messages: list[ChatMessage], model: str, max_tokens: int) -> dict:
        raise NotImplementedError

    def build_stream_payload(
        self, messages: list[ChatMessage], model: str, max_tokens: int
    ) -> dict:
        return self.build_payload(messages, model, max_tokens) | {"stream": True}

    def parse_response(self, data: dict, model: str) -> Completion:
        raise NotImplementedError

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def parse_stream_record(self, record: SSERecord) -> list[StreamEvent]:
        raise NotImplementedError

    def error_message(self, body: Any) -> str | None:
        """The provider's own words in an error body: {"error": {"message": ...}}."""
        if not isinstance(body, dict):
            return None
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        return str(body["message"]) if isinstance(body.get("message"), str) else None

    def error_reasons(self, body: Any) -> set[str]:
        """Machine-readable error codes: {"error": {"code", "type", "status"}}."""
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return set()
        error = body["error"]
        return {str(error[k]) for k in ("code", "type", "status") if error.get(k)}

    def retry_delay(self, body: Any) -> float | None:
        """A wait asked for in the body rather than in a header (None: none asked)."""
        return None


def sse_json(record: SSERecord) -> dict:
    """An SSE record's data as a JSON object (a malformed one raises ValueError)."""
    data = json.loads(record.data)
    if not isinstance(data, dict):
        raise ValueError("stream record is not a JSON object")
    return data
