"""A provider request's JSON body, its images' base64 put in as it is.

`json.dumps` looks at a string's every character to escape it: 3.5 ms for the 1.4 MB of a
1 MiB image's base64, twice what encoding it took. Base64 (and a `data:` URL of it) is made only
of characters JSON takes as they are, so such text, marked `Base64Text` where it is made, goes
into the body unread: the rest of the payload is serialised with a short placeholder in its
place, and the text is joined in. The body is the same bytes `json.dumps` would have made.
"""

import json
import re
import secrets
from typing import Any


class Base64Text(str):
    """Text known to be only base64's alphabet, or a `data:<type>;base64,` URL of it: JSON
    takes it unescaped. Where it is unsure (a client's own base64), a plain str is used."""

    __slots__ = ()


def _swapped(value: Any, texts: list[Base64Text], token: str) -> Any:
    if isinstance(value, Base64Text):
        texts.append(value)
        return f"{token}{len(texts) - 1}"
    if isinstance(value, dict):
        return {k: _swapped(v, texts, token) for k, v in value.items()}
    if isinstance(value, list):
        return [_swapped(v, texts, token) for v in value]
    return value


def encode(payload: Any, *, images: bool) -> bytes:
    """`payload` as the UTF-8 JSON body `requests` would send (`json=`); with `images` (the
    messages hold some), its Base64Text put in without being escaped."""
    if not images:
        return json.dumps(payload, allow_nan=False).encode()
    texts: list[Base64Text] = []
    token = "b64-" + secrets.token_hex(16) + "-"  # in no text a caller could have given
    text = json.dumps(_swapped(payload, texts, token), allow_nan=False)
    if not texts:
        return text.encode()
    pieces = re.split(f'"{token}(\\d+)"', text)
    body = [pieces[0].encode()]
    for i in range(1, len(pieces), 2):
        body += (b'"', texts[int(pieces[i])].encode("ascii"), b'"', pieces[i + 1].encode())
    return b"".join(body)
