"""A provider's HTTP format: the defaults most formats share, which each format overrides only
where it differs.

A format is pure: it builds paths, headers and payloads, and parses bodies, stream records and
error bodies. It never makes a request (see client.py).
"""

import hashlib
import json
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from .base import ChatMessage, Completion, Options, StreamEvent, ToolCallDelta
from .decoders import Decoder, SSEDecoder, SSERecord
from .messages import IMAGE_TYPES, UnsupportedInput, images_of, new_call_id
from .tools import NO_TOOLING, Tooling


@dataclass(frozen=True)
class Call:
    """What one request asks for besides the messages."""

    max_tokens: int  # the output cap, or the caller's smaller max_tokens
    options: Options  # the options this format takes for this model (the rest left out)
    reasoning: bool  # the model reasons: its thinking is asked for where that must be asked
    tooling: Tooling = NO_TOOLING  # tools, tool choice and response format


@dataclass
class StreamState:
    """What reading one stream remembers from record to record: the tool calls begun so far,
    by the provider's own key for each (its index, its content block), as our index and id."""

    calls: dict[Hashable, tuple[int, str]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    with_arguments: set[int] = field(default_factory=set)  # calls given a fragment so far

    def begin(self, key: Hashable, name: str, call_id: str | None, **data: str) -> ToolCallDelta:
        """A new call's first delta: the next index, and its id (a new one when the provider
        gave none, or one already used in this reply)."""
        if not call_id or call_id in self.ids:
            call_id = new_call_id()
        index = len(self.ids)
        self.ids.add(call_id)
        self.calls[key] = (index, call_id)
        return ToolCallDelta(index=index, id=call_id, name=name, provider_data=data or None)

    def fragment(self, index: int, text: str) -> ToolCallDelta:
        if text:
            self.with_arguments.add(index)
        return ToolCallDelta(index=index, arguments=text)

    def whole(
        self, key: Hashable, name: str, call_id: str | None, arguments: str, **data: str
    ) -> list[ToolCallDelta]:
        """A call the provider sends whole (Gemini, Ollama): its first delta, then its
        arguments as one fragment."""
        first = self.begin(key, name, call_id, **data)
        return [first, self.fragment(first.index, arguments)]


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

    def stream_decoder(self) -> Decoder:
        return SSEDecoder()

    def parse_stream_record(
        self, record: Any, state: StreamState | None = None
    ) -> list[StreamEvent]:
        """The events of one record of `stream_decoder()`'s (an SSERecord by default); `state`
        is the stream's own, the same for each of its records (None: a record read alone)."""
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


def check_images(
    messages: list[ChatMessage],
    *,
    accepted: bool = True,
    urls: bool = True,
    types: tuple[str, ...] = IMAGE_TYPES,
) -> None:
    """Refuse the images a provider cannot take: any (`accepted` False), those given by URL
    (`urls` False: it needs the bytes, which PolyGenix never fetches), or of another type."""
    for message in messages:
        if isinstance(message["content"], str):
            continue
        for image in images_of(message["content"]):
            if not accepted:
                raise UnsupportedInput("this provider takes no image input.")
            source = image["source"]
            if source["type"] == "url":
                if not urls:
                    raise UnsupportedInput(
                        "images cannot be given by URL to this provider, which needs their "
                        "bytes: send the image inline (a data: URL, base64)."
                    )
            elif source["media_type"] not in types:
                raise UnsupportedInput(
                    f"{source['media_type']} images are not accepted by this provider "
                    f"(it takes {', '.join(t.removeprefix('image/') for t in types)}).",
                    image_type=source["media_type"],
                )


_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def map_call_ids(
    messages: list[ChatMessage], valid: re.Pattern[str], make: Callable[[str, int], str]
) -> dict[str, str]:
    """For a provider with rules of its own for call ids: each id in `messages` that breaks
    them, mapped to one that keeps them (`make(id, attempt)`, the same for the same id in every
    request, distinct from every other id of the conversation). Ids that keep the rules are
    left as they are, so a client sees back exactly the ids it was given."""
    ids = [c["id"] for m in messages for c in m.get("tool_calls") or ()]
    ids += [m["tool_call_id"] for m in messages if "tool_call_id" in m]
    taken = {i for i in ids if valid.fullmatch(i)}
    mapped: dict[str, str] = {}
    for original in dict.fromkeys(ids):
        if original in taken or original in mapped:
            continue
        attempt = 0
        while (candidate := make(original, attempt)) in taken:
            attempt += 1
        taken.add(candidate)
        mapped[original] = candidate
    return mapped


def derived_id(original: str, attempt: int, length: int) -> str:
    """`length` alphanumeric characters derived from `original` (deterministic)."""
    digest = int.from_bytes(hashlib.sha256(f"{attempt}:{original}".encode()).digest(), "big")
    chars = []
    for _ in range(length):
        digest, rest = divmod(digest, len(_ALPHABET))
        chars.append(_ALPHABET[rest])
    return "".join(chars)
