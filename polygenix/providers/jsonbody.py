"""A provider request's JSON body, its images' base64 sent as it is.

`json.dumps` looks at each character of a string to escape it (3.5 ms for the 1.4 MB of a
1 MiB image's base64), and every copy of a megabyte made while another is alive costs as
much again in fresh memory. Base64 needs no escaping in JSON, so the base64 PolyGenix makes
(a `Base64Source`, which keeps its ASCII bytes) goes into a payload as an `Inline` (wire formats
call `inline`), and `encode` makes the body of the payload's JSON around those bytes, copying
none of them: a `Body` of pieces, sent one after another with its length known beforehand.
The provider receives the same bytes `json.dumps` would have made.
"""

import base64
import json
import secrets
from collections.abc import Iterator, Mapping
from typing import Any, cast

from . import messages


class Base64Source(dict):
    """An image's source as PolyGenix makes it from the bytes, `{"type": "base64",
    "media_type", "data"}`, keeping `raw`: `data` as ASCII bytes, which a body takes as they
    are: made from the bytes (`of`), or from a client's base64 that decoded strictly (`checked`:
    a /v1 data: URL's).

    Made from the bytes, `data` (the base64 as text, 1.4 MB for a 1 MiB image) is made only
    when something reads it: a provider's body takes `raw`, and most turns read nothing else.
    Every way of reading the dict (a key, `in`, `get`, iteration, `items`, `==`, json.dumps, a
    copy) sees it."""

    __slots__ = ("raw",)
    raw: bytes

    @classmethod
    def of(cls, media_type: str, data: bytes) -> messages.Base64Source:
        """The source of `data`, typed as the messages' source it is (a dict of those keys)."""
        source = cls(type="base64", media_type=media_type)
        source.raw = base64.b64encode(data)
        return cast(messages.Base64Source, source)

    @classmethod
    def checked(cls, media_type: str, text: str) -> "Base64Source":
        """`text`, base64 that `binascii.a2b_base64(text, strict_mode=True)` decoded: only the
        base64 alphabet and its padding, nothing JSON escapes."""
        source = cls(type="base64", media_type=media_type, data=text)
        source.raw = text.encode("ascii")
        return source

    def _whole(self) -> "Base64Source":
        if not dict.__contains__(self, "data"):
            dict.__setitem__(self, "data", self.raw.decode("ascii"))
        return self

    def __missing__(self, key: str) -> Any:
        if key != "data":
            raise KeyError(key)
        return dict.__getitem__(self._whole(), key)


def _whole_first(name: str):
    read = getattr(dict, name)

    def method(self, *args, **kwargs):
        return read(self._whole(), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in (
    *("__contains__", "__iter__", "__len__", "__eq__", "__ne__", "__repr__", "__or__"),
    *("get", "keys", "values", "items", "copy", "pop", "popitem", "setdefault"),
):
    setattr(Base64Source, _name, _whole_first(_name))


class Inline:
    """In a payload: a JSON string of `prefix` (ASCII, nothing to escape) then base64 bytes."""

    __slots__ = ("prefix", "raw")

    def __init__(self, prefix: bytes, raw: bytes):
        self.prefix = prefix
        self.raw = raw


def inline(source: Mapping[str, Any], prefix: str = "") -> "str | Inline":
    """`prefix` + a base64 source's data, for a payload: an Inline for a Base64Source."""
    if isinstance(source, Base64Source):
        return Inline(prefix.encode("ascii"), source.raw)
    return prefix + source["data"]


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
