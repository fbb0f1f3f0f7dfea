"""Request bodies parsed as JSON that every later step can handle, or refused with a 400.

Python's parser accepts what would fail later, as a 500: nesting that exhausts the interpreter's
recursion (100,000 `[`), integers of thousands of digits, NaN and Infinity, strings holding an
unpaired surrogate (`"\\ud800"`, which no database or encoder takes). Each is a
`json.JSONDecodeError` here, which Flask and webargs (through flask-smorest) both answer with
400. (A NUL, which PostgreSQL cannot store, is refused by each string field, with a 422 that
names the field: see `api.no_nul`.)
"""

import json
import math
import re
from typing import Any

from flask.json.provider import DefaultJSONProvider
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

MAX_DEPTH = 32
MAX_DIGITS = 100
_UNPAIRED = re.compile(r"[\ud800-\udfff]")


class InvalidJSON(json.JSONDecodeError):
    def __init__(self, reason: str):
        # A document that is not empty: webargs reads an empty one as "no body".
        super().__init__(reason, "<request body>", 0)
        self.reason = reason


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise InvalidJSON(f"a number has more than {MAX_DIGITS} digits")
    return int(digits)


def _real(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON("a number is too large")
    return value


def _constant(name: str):
    raise InvalidJSON(f"{name} is not JSON")


def _check_string(text: str) -> None:
    if not text.isascii() and _UNPAIRED.search(text):
        raise InvalidJSON("a string holds an unpaired surrogate")


def _check(value: Any) -> None:
    """Depth, and every string (keys too), walked without recursion."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str):
                    _check_string(key)
                pending.append((child, depth + 1))


def loads(data: str | bytes) -> Any:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJSON("the body is not UTF-8") from None
    try:
        value = json.loads(data, parse_int=_integer, parse_float=_real, parse_constant=_constant)
    except RecursionError:
        raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels") from None
    _check(value)
    return value


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON (request.get_json) through `loads`."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)


class StrictParser(FlaskParser):
    """webargs' parser (flask-smorest's request bodies) through `loads`."""

    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        return loads(data) if data else core.missing

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        reason = getattr(error, "reason", None)
        detail = f"Invalid JSON body: {reason}." if reason else "Invalid JSON body."
        abort(400, exc=error, messages={"json": [detail]})
