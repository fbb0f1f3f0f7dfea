"""A provider request's JSON body, its images' base64 sent as it is.

`json.dumps` looks at each character of a string to escape it (3.5 ms for the 1.4 MB of a
1 MiB image's base64), and every copy of a megabyte made while another is alive costs as
much again in fresh memory. Base64 needs no escaping in JSON, and a message's inline image
keeps its base64 as ASCII bytes (messages.Base64Source), so it goes into a payload as an
`Inline` (wire formats call `inline`), and `encode` makes the body of the payload's JSON around
those bytes, copying none of them: a `Body` of pieces, sent one after another with its length
known beforehand. The provider receives the same bytes `json.dumps` would have made.
"""

import json
import secrets
from collections.abc import Iterator
from typing import Any

from .messages import Base64Source


class Inline:
    """In a payload: a JSON string of `prefix` (ASCII, nothing to escape) then base64 bytes."""

    __slots__ = ("prefix", "raw")

    def __init__(self, prefix: bytes, raw: bytes):
        self.prefix = prefix
        self.raw = raw


def inline(source: Base64Source, prefix: str = "") -> Inline:
    """`prefix` (ASCII) then an inline image's base64, for a payload: its bytes as they are."""
    return Inline(prefix.encode("ascii"), source["data"])


class Body:
    """A request body in pieces: requests sends them one after another, its Content-Length
    the sum (an object with a length and an iterator, not a list, for requests to take it)."""

    __slots__ = ("pieces", "size")

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces
        self.size = sum(len(p) for p in pieces)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.pieces)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)


def encode(payload: Any) -> bytes | Body:
    """`payload` as the UTF-8 JSON body `requests` would send (`json=`), its Inline values
    joined in as they are."""
    found: list[Inline] = []
    token = ""

    def placeholder(value: Any) -> str:
        nonlocal token
        if not isinstance(value, Inline):
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
        token = token or "b64-" + secrets.token_hex(16) + "-"  # in no text a caller gave
        found.append(value)
        return f"{token}{len(found) - 1}"

    text = json.dumps(payload, allow_nan=False, default=placeholder)
    if not found:
        return text.encode()
    pieces: list[bytes] = []
    rest = text
    for n, value in enumerate(found):
        before, rest = rest.split(f'"{token}{n}"', 1)
        pieces += (before.encode(), b'"', value.prefix, value.raw, b'"')
    pieces.append(rest.encode())
    return Body(pieces)
