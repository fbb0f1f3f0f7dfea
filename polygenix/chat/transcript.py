"""A session's transcript as one digest, so that a client re-sending a whole conversation
(every OpenAI-style client does) finds the session it continues in one indexed lookup.

The digest chains the SHA-256 of each message of the session's complete turns, user and
assistant in order: extending a transcript by a turn needs only its digest so far. Failed and
cut-short turns are not part of it (a client resends what it was answered, and it was answered
an error). The assistant's tool calls and the tool results are (`entry`): a client running a tool
loop re-sends them, and its next request continues the same session.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..providers.messages import text_of

EMPTY = ""


def extend(digest: str | None, messages: Iterable[tuple[str, str]]) -> str:
    """`digest` (EMPTY for none) followed by these (role, text) messages."""
    value = digest or EMPTY
    for role, text in messages:
        value = hashlib.sha256(f"{value}\x1e{role}\x1f{text}".encode()).hexdigest()
    return value


def entry(message: Mapping[str, Any]) -> tuple[str, str]:
    """A message as the transcript holds it: (role, text); with the assistant's tool calls
    (ids, names and arguments as the model produced them) or the call a tool result answers.
    A message of text alone is (role, text), as it always was."""
    content = message["content"]
    text = content if isinstance(content, str) else text_of(content)
    if message.get("tool_calls"):
        calls = [[c["id"], c["name"], _arguments(c["arguments"])] for c in message["tool_calls"]]
        text += "\x1d" + json.dumps(calls, ensure_ascii=False, separators=(",", ":"))
    if message.get("tool_call_id") is not None:
        text = message["tool_call_id"] + "\x1d" + text
    return message["role"], text


def _arguments(text: str) -> str:
    """A call's arguments as the digest holds them: the JSON value in one spelling, for clients
    re-send what they parsed (LangChain sends `json.dumps(args)`, not the model's text); text
    that is no JSON as it is."""
    if not text.strip():
        return "{}"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def entries(messages: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [entry(m) for m in messages]
