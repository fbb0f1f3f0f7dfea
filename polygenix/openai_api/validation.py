"""What every `/v1` request schema shares (schemas.py, responses_schema.py): fields that take
JSON's types as OpenAI does, and the one place their errors become OpenAI's 400,
`{"error": {"message", "type": "invalid_request_error", "param", "code"}}`.

A number is never a string or a boolean (Python's True is an int: refused), a flag is true or
false and nothing else, no string holds a NUL (PostgreSQL cannot store one), and a list's
length is checked before any of its items is read. An error's message is written about the
value at fault and completed with its path: "must not be an empty list." raised for
`messages[2].content` says "messages[2].content must not be an empty list." (a message that
begins with a capital is a whole sentence, left as it is).
"""

from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma
from flask import current_app
from flask_smorest import abort
from marshmallow import fields
from marshmallow.exceptions import SCHEMA

UNKNOWN = "Unknown field."
# marshmallow's own messages, as sentences about the value at fault.
STOCK = {
    "Missing data for required field.": "is required.",
    "Field may not be null.": "must not be null.",
    "Invalid input type.": "must be an object.",
    "Not a valid string.": "must be a string.",
    "Not a valid list.": "must be a list.",
    "Not a valid mapping type.": "must be an object.",
    "Not a valid integer.": "must be a whole number.",
    "Must be one of: ": "must be one of ",
}
Path = list[str | int]
MISSING = ma.missing


def invalid(param: str, message: str):
    """A 400 in OpenAI's shape whose `param` is `param`."""
    abort(400, message=message, errors={"json": {param: [message]}})


def where(path: Path) -> str:
    """A path as OpenAI writes it: messages[2].content."""
    written = ""
    for key in path:
        written += f"[{key}]" if isinstance(key, int) else f".{key}" if written else key
    return written


def top_field(path: Path) -> str:
    return str(path[0])


def field_path(path: Path) -> str:
    """The names down to the first list index: text.format.name, tools (for tools[0].name)."""
    names = []
    for key in path:
        if isinstance(key, int):
            break
        names.append(key)
    return ".".join(names)


def _first(errors: Any) -> tuple[Path, str]:
    path: Path = []
    while isinstance(errors, dict | list):
        if isinstance(errors, list):
            errors = errors[0]
            continue
        key, errors = next(iter(errors.items()))
        if key != SCHEMA:
            path.append(key)
    return path, str(errors)


def _sentence(path: Path, said: str) -> str:
    if said == UNKNOWN:
        return f"Unknown parameter: '{where(path)}'."
    for stock, ours in STOCK.items():
        if said.startswith(stock):
            said = ours + said.removeprefix(stock)
    if not path or said[:1].isupper():
        return said
    return where(path) + ("" if said[:1] in ":.[" else " ") + said


def load(schema: ma.Schema, body: Any, param: Callable[[Path], str] = top_field) -> Any:
    """`body` loaded by `schema`; else a 400 about its first error, `param` naming the field
    from the error's path."""
    try:
        return schema.load(body)
    except ma.ValidationError as error:
        path, said = _first(error.messages)
        invalid(param(path) if path else "body", _sentence(path, said))


class Schema(ma.Schema):
    """A JSON object whose fields OpenAI does not define are ignored (or, with `unknown =
    RAISE`, refused). It loads an object by marshmallow 4's `_deserialize` hook (the version is
    pinned in constraints.txt), without the per-object work these schemas never need."""

    class Meta:
        unknown = ma.EXCLUDE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # (where the value goes, its key in the object, its field, read even when missing)
        self._visits = [
            (field.attribute or name, field.data_key or name, field, _read_if_missing(field))
            for name, field in self.load_fields.items()
        ]
        self._keys = {key for _, key, _, _ in self._visits}

    def _deserialize(
        self, data, *, error_store, many=False, partial=None, unknown=ma.RAISE, index=None
    ):
        # marshmallow's own loop, for one object, less what costs on every object and that
        # these schemas never use (partial loads, unknown fields kept, dotted attributes): and
        # a field the object lacks is skipped unless it is required or has a default, as
        # marshmallow's loop would find it does nothing. Over half of a message's load.
        if many or partial is not None or unknown == ma.INCLUDE or not isinstance(data, dict):
            return super()._deserialize(
                data,
                error_store=error_store,
                many=many,
                partial=partial,
                unknown=unknown,
                index=index,
            )
        index = index if self.opts.index_errors else None
        read = self.dict_class()
        for name, key, field, needed in self._visits:
            value = data.get(key, MISSING)
            if value is MISSING and not needed:
                continue
            try:
                value = field.deserialize(value, key, data)
            except ma.ValidationError as error:
                error_store.store_error(error.messages, key, index=index)
                value = error.valid_data or MISSING
            if value is not MISSING:
                read[name] = value
        if unknown == ma.RAISE:
            for key in data.keys() - self._keys:
                error_store.store_error([self.error_messages["unknown"]], key, index=index)
        return read


def _read_if_missing(field: fields.Field) -> bool:
    return field.required or field.load_default is not MISSING


class Text(fields.String):
    """A string without NUL."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise ma.ValidationError("must not contain NUL characters.")
        return value


class ModelName(Text):
    default_error_messages = {
        "invalid": "must be a model name (1 to 200 characters).",
        "required": "must be a model name (1 to 200 characters).",
        "null": "must be a model name (1 to 200 characters).",
    }

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        value = super()._deserialize(value, attr, data, **kwargs)
        if not value.strip() or len(value) > 200:
            raise self.make_error("invalid")
        return value


class Number(fields.Field):
    """A JSON number from `low` to `high`, as a float."""

    def __init__(self, low: float, high: float, **kwargs):
        super().__init__(allow_none=True, **kwargs)
        self.low, self.high = low, high

    def _deserialize(self, value, attr, data, **kwargs) -> float:
        # type(), not isinstance(): a bool is an int, and no temperature.
        if type(value) not in (int, float) or not self.low <= value <= self.high:
            raise ma.ValidationError(f"must be a number from {self.low:g} to {self.high:g}.")
        return float(value)


class Whole(fields.Field):
    """A JSON integer from `low` (to `high`)."""

    def __init__(self, low: int, high: int | None = None, **kwargs):
        super().__init__(allow_none=True, **kwargs)
        self.low, self.high = low, high

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        if (
            type(value) is not int
            or value < self.low
            or (self.high is not None and value > self.high)
        ):
            if self.high is None:
                raise ma.ValidationError(f"must be a whole number of at least {self.low}.")
            raise ma.ValidationError(f"must be a whole number from {self.low} to {self.high}.")
        return value


class Flag(fields.Field):
    """true or false (not 1, not "true")."""

    def __init__(self, **kwargs):
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> bool:
        if type(value) is not bool:
            raise ma.ValidationError("must be true or false.")
        return value


class JsonSchema(fields.Dict):
    default_error_messages = {"invalid": "must be a JSON Schema object."}


class Refused(fields.Field):
    """A field OpenAI defines that PolyGenix cannot honour: a 400 saying `why` for any value
    but null and, unless `any_value`, those that ask for nothing (false, 0, "", [])."""

    def __init__(self, why: str, any_value: bool = False, **kwargs):
        super().__init__(allow_none=True, **kwargs)
        self.why, self.any_value = why, any_value

    def _deserialize(self, value, attr, data, **kwargs):
        if value or self.any_value:
            raise ma.ValidationError(self.why)
        return None


class TextOrParts(fields.Field):
    """A message's content: a string, or a non-empty list of parts read by `part`; as the list
    of its parts (the string alone for a string)."""

    default_error_messages = {
        "invalid": "must be a string or a list of parts.",
        "empty": "must not be an empty list.",
    }

    def __init__(self, part: fields.Field, **kwargs):
        super().__init__(**kwargs)
        self.parts = fields.List(part)

    def _deserialize(self, value, attr, data, **kwargs) -> list:
        if isinstance(value, str):
            if "\x00" in value:
                raise ma.ValidationError("must not contain NUL characters.")
            return [value]
        if not isinstance(value, list):
            raise self.make_error("invalid")
        if not value:
            raise self.make_error("empty")
        return self.parts.deserialize(value)


Loader = ma.Schema | fields.Field


class OneOf(fields.Field):
    """An object read by the schema (or field) its `key` names, e.g. a part by its "type";
    `refused` says why another value of the key is a 400 ({kind} is the value), `not_object`
    why a value that is no object is (`refused` if None)."""

    def __init__(
        self,
        key: str,
        kinds: Mapping[str, Loader],
        refused: str,
        default: str | None = None,
        not_object: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.key, self.kinds, self.refused, self.default = key, kinds, refused, default
        self.not_object = not_object

    def pick(self, value: Any) -> Loader:
        """The schema (or field) that reads `value`, nested OneOfs followed; else the error."""
        if not isinstance(value, dict) and self.not_object:
            raise ma.ValidationError(self.not_object)
        kind = value.get(self.key, self.default) if isinstance(value, dict) else None
        loader = self.kinds.get(kind) if isinstance(kind, str) else None
        if loader is None:
            raise ma.ValidationError(self.refused.format(kind=kind))
        return loader.pick(value) if isinstance(loader, OneOf) else loader

    def _deserialize(self, value, attr, data, **kwargs):
        loader = self.pick(value)
        if isinstance(loader, ma.Schema):
            return loader.load(value)
        return loader.deserialize(value)


class Capped(fields.List):
    """A list of at most `most` items (a number, or a setting's name), its length checked
    before any item is read; `empty` says why an empty list is refused (None: it is not)."""

    def __init__(
        self, item: fields.Field, most: int | str, what: str, empty: str | None = None, **kw
    ):
        super().__init__(item, **kw)
        self.most, self.what, self.empty = most, what, empty

    def _deserialize(self, value, attr, data, **kwargs) -> list:
        if not isinstance(value, list):
            raise self.make_error("invalid")
        if not value and self.empty:
            raise ma.ValidationError(self.empty)
        most = current_app.config[self.most] if isinstance(self.most, str) else self.most
        if len(value) > most:
            raise ma.ValidationError(f"must hold at most {most} {self.what}, not {len(value)}.")
        return self._load(value, attr, data, **kwargs)

    def _load(self, value: list, attr, data, **kwargs) -> list:
        return super()._deserialize(value, attr, data, **kwargs)


class Grouped(Capped):
    """A Capped list of objects of several kinds (`item` picks each one's schema): the items a
    schema reads are loaded together, by one `load(many=True)`, not one `load` each (most of
    what a load costs is paid once per call). The first error is the first item's, as a List's.
    An item schema's post_load hooks must not raise: in a many load their errors name no item
    (a rule about an item is a `validates_schema`, which marshmallow runs item by item)."""

    def __init__(self, item: OneOf, most: int | str, what: str, **kw):
        super().__init__(item, most, what, **kw)
        self.item = item

    def _load(self, value: list, attr, data, **kwargs) -> list:
        read: list = [None] * len(value)
        errors: dict[int, Any] = {}
        groups: dict[int, tuple[ma.Schema, list[int], list]] = {}
        for n, each in enumerate(value):
            try:
                loader = self.item.pick(each)
                if isinstance(loader, ma.Schema):
                    group = groups.setdefault(id(loader), (loader, [], []))
                    group[1].append(n)
                    group[2].append(each)
                else:
                    read[n] = loader.deserialize(each)
            except ma.ValidationError as error:
                errors[n] = error.messages
        for schema, where_, items in groups.values():
            try:
                for n, loaded in zip(where_, schema.load(items, many=True), strict=True):
                    read[n] = loaded
            except ma.ValidationError as error:
                errors.update((where_[n], said) for n, said in error.messages.items())
        if errors:
            raise ma.ValidationError(dict(sorted(errors.items())))
        return read
