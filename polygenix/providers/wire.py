"""A provider's HTTP format: the defaults most formats share, which each format overrides only
where it differs.

A format is pure: it builds paths, headers and payloads, and parses bodies, stream records and
error bodies. It never makes a request (see client.py).
"""

import json
from dataclasses import dataclass
from typing import Any

from .base import ChatMessage, Completion, Options, StreamEvent
from .decoders import SSEDecoder, SSERecord


@dataclass(frozen=True)
class Call:
    """What one request asks for besides the messages."""

    max_tokens: int  # the output cap, or the caller's smaller max_tokens
    options: Options  # the options this format takes for this model (the rest left out)
    reasoning: bool  # the model reasons: its thinking is asked for where that must be asked


class WireFormat:
    # Anthropic's models think only when asked (a reasoning_effort), and then need the larger
    # output cap.
    THINKS_WHEN_ASKED = False
    # What a 403 means, when it is not a rejected key.
    FORBIDDEN: str | None = None

    def path(self, model: str) -> str:
        raise NotImplementedError

    def stream_path(self, model: str) -> str:
        return self.path(model)

    def models_path(self) -> str:
        """Where the provider lists its models."""
        return "/models"

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def accepted(self, model: str, options: Options, reasoning: bool) -> Options:
        """The options this format sends for `model`; those it or the model would reject are
        left out (None). By default: all but reasoning_effort, which only a reasoning model
        takes."""
        if not reasoning and options.reasoning_effort is not None:
            return without(options, "reasoning_effort")
        return options

    def build_payload(self, messages: list[ChatMessage], model: str, call: Call) -> dict:
        raise NotImplementedError

    def build_stream_payload(self, messages: list[ChatMessage], model: str, call: Call) -> dict:
        return self.build_payload(messages, model, call) | {"stream": True}

    def parse_response(self, data: dict, model: str) -> Completion:
        raise NotImplementedError

    def body_error(self, data: dict) -> tuple[str, int | None] | None:
        """An error reported in a 2xx body (its message, and the HTTP status it stands for),
        or None: {"error": {"message", "code"}} with no reply beside it."""
        error = data.get("error")
        if not error or data.get("choices") or data.get("candidates"):
            return None
        if isinstance(error, dict):
            code = error.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else None
            return str(error.get("message") or "error"), status
        return str(error), None

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def parse_stream_record(self, record: SSERecord) -> list[StreamEvent]:
        raise NotImplementedError

    def parse_models(self, data: Any) -> list[str]:
        """The model ids a models listing names (OpenAI's shape: {"data": [{"id"}]})."""
        return [str(m["id"]) for m in data["data"] if isinstance(m, dict) and m.get("id")]

    def error_message(self, body: Any) -> str | None:
        """The provider's own words in an error body: {"error": {"message": ...}}, a message
        that is itself an object (Mistral's validation errors), or a bare {"detail": [...]}."""
        if not isinstance(body, dict):
            return None
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return flatten(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if body.get(key):
                return flatten(body[key])
        return None

    def error_reasons(self, body: Any) -> set[str]:
        """Machine-readable error codes: {"error": {"code", "type", "status"}}, or the same keys
        at the top level (Mistral)."""
        if not isinstance(body, dict):
            return set()
        error = body["error"] if isinstance(body.get("error"), dict) else body
        return {str(error[k]) for k in ("code", "type", "status") if error.get(k)}

    def retry_delay(self, body: Any) -> float | None:
        """A wait asked for in the body rather than in a header (None: none asked)."""
        return None

    def quota_exhausted(self, status: int, body: Any) -> bool:
        """The account's quota or credit is used up: retrying will not help."""
        reasons = self.error_reasons(body)
        text = (self.error_message(body) or "").lower()
        return (
            "insufficient_quota" in reasons
            or "billing_error" in reasons
            or status == 402
            or "insufficient balance" in text
            or "credit balance is too low" in text
        )


def without(options: Options, *names: str) -> Options:
    """`options` with `names` left out."""
    return Options(**{k: (None if k in names else v) for k, v in vars(options).items()})


def flatten(message: Any) -> str:
    """An error message as one line: a string as it is, a validation detail list (pydantic's
    {"detail": [{"loc", "msg"}]}) as `loc: msg; ...`, anything else as JSON."""
    if isinstance(message, str):
        try:
            decoded = json.loads(message)
        except ValueError:
            return message
        return flatten(decoded) if isinstance(decoded, dict | list) else message
    if isinstance(message, dict) and "detail" in message:
        return flatten(message["detail"])
    if isinstance(message, list):
        lines = []
        for item in message:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(p) for p in item.get("loc") or [] if p != "body")
                lines.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                lines.append(flatten(item))
        return "; ".join(lines)
    return json.dumps(message)


def sse_json(record: SSERecord) -> dict:
    """An SSE record's data as a JSON object (a malformed one raises ValueError)."""
    data = json.loads(record.data)
    if not isinstance(data, dict):
        raise ValueError("stream record is not a JSON object")
    return data
