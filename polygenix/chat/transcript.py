"""A session's transcript as one digest, so that a client re-sending a whole conversation
(every OpenAI-style client does) finds the session it continues in one indexed lookup.

The digest chains the SHA-256 of each message of the session's complete turns, user and
assistant in order: extending a transcript by a turn needs only its digest so far. Failed and
cut-short turns are not part of it (a client resends what it was answered, and it was answered
an error).
"""

import hashlib
from collections.abc import Iterable

EMPTY = ""


def extend(digest: str | None, messages: Iterable[tuple[str, str]]) -> str:
    """`digest` (EMPTY for none) followed by these (role, text) messages."""
    value = digest or EMPTY
    for role, text in messages:
        value = hashlib.sha256(f"{value}\x1e{role}\x1f{text}".encode()).hexdigest()
    return value
