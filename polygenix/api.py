"""flask-smorest subclassed once: the error envelope (errors.py), the bearer scheme,
`login_required`; and the field types and pagination every resource shares."""

from http import HTTPStatus

import flask_smorest
import marshmallow as ma
from flask import Response
from sqlalchemy import Select, false
from werkzeug.exceptions import HTTPException

from .auth.access import required
from .errors import ErrorSchema, http_error_response
from .strictjson import StrictParser

BEARER = "bearerAuth"
# Past any real listing; a larger OFFSET would overflow the databases' 64-bit integers.
MAX_OFFSET = 2**31


class NoticeSchema(ma.Schema):
    """A success that carries only a sentence."""

    message = ma.fields.String(required=True)


NO_NUL = "^[^\\u0000]*$"  # the same rule, as an OpenAPI pattern


def no_nul(value: str) -> None:
    """A validator: PostgreSQL cannot store a NUL character, so no field may hold one."""
    if "\x00" in value:
        raise ma.ValidationError("Must not contain NUL characters.")


class Text(ma.fields.String):
    """A string every database can store (no NUL), never blank; `strip` trims it first."""

    def __init__(self, *, strip: bool = False, max_length: int | None = None, **kwargs):
        # Not blank, and no NUL anywhere (PostgreSQL cannot store one).
        documented = {"minLength": 1, "pattern": "^[^\\u0000]*[^\\u0000\\s][^\\u0000]*$"}
        if max_length is not None:
            documented["maxLength"] = max_length
        kwargs["metadata"] = documented | kwargs.get("metadata", {})
        super().__init__(**kwargs)
        self.strip = strip
        self.max_length = max_length

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise ma.ValidationError("Must not contain NUL characters.")
        if self.strip:
            value = value.strip()
        if not value.strip():
            raise ma.ValidationError("Must not be blank.")
        if self.max_length is not None and len(value) > self.max_length:
            raise ma.ValidationError(f"Must be at most {self.max_length} characters.")
        return value


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *, spec_kwargs=None):
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.spec.components.security_scheme(
            BEARER,
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "The access_token from /api/auth/login or /api/auth/register.",
            },
        )

    def _register_pagination_header(self):
        # flask-smorest documents the header as an object; on the wire it is a JSON string.
        self.spec.components.header(
            "PAGINATION",
            {
                "description": "Pagination metadata as JSON: total, total_pages, first_page, "
                "last_page, page, previous_page, next_page",
                "schema": {"type": "string"},
            },
            lazy=True,
        )

    def handle_http_exception(self, error: HTTPException) -> Response:
        """Every HTTP error, aborts and validation failures included, in the envelope."""
        return http_error_response(error)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictParser()

    def login_required(
        self,
        func=None,
        *,
        refresh: bool = False,
        keys: bool = False,
        admin: bool = False,
        prepares: bool = False,
    ):
        """Require a valid bearer token: an access token (a refresh token if `refresh`), or
        with `keys` a personal API key too (see auth/access.py); with `admin`, an admin's, the
        403 coming before the request's arguments are read; `prepares`: see `required`.
        Outermost of a view's decorators."""

        def decorator(view):
            view = required(keys=keys, refresh=refresh, admin=admin, prepares=prepares)(view)
            view = self.doc(security=[{BEARER: []}])(view)
            if admin:
                view = self.alt_response(403, response=HTTPStatus.FORBIDDEN.name)(view)
            return self.alt_response(401, response=HTTPStatus.UNAUTHORIZED.name)(view)

        return decorator(func) if func is not None else decorator

    def errors(self, *codes: int):
        """Document the error responses a view may give, each with the envelope schema."""

        def decorator(view):
            for code in codes:
                view = self.alt_response(code, response=HTTPStatus(code).name)(view)
            return view

        return decorator


def page_of(statement: Select, page: int, page_size: int) -> Select:
    """`statement` limited to one page; a page far past the end selects nothing."""
    offset = (page - 1) * page_size
    if offset > MAX_OFFSET:
        return statement.where(false()).limit(page_size)
    return statement.limit(page_size).offset(offset)
