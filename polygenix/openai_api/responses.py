"""OpenAI's Responses API under /v1 (https://platform.openai.com/docs/api-reference/responses):
`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.

A response is a chat turn like any other (responses_service.py, chat/turn.py), sent to the
provider through the same chat API PolyGenix speaks to it, so it works alike on every provider.
Its context is the `instructions`, the chain of responses `previous_response_id` continues
(rebuilt from what PolyGenix kept, responses_store.py), and the new input. Stored (`store`,
the default), the turn goes in one of the caller's sessions (the one the response it continues
is in, else a new one, or the session whose transcript its input continues) and the response is
kept for its owner; with `"store": false` nothing is kept (what the call used counts all the
same).
"""

import json

from flask import Blueprint, Response, request, stream_with_context

from ..auth.access import current_user, required, unless_deleted
from ..chat import streaming
from ..chat import turn as turns
from ..chat.turn import CLIENT_CLOSED
from ..errors import error_response, provider_error_response
from ..governance.policy import unknown_model
from ..limits import per_user
from ..providers import ProviderError, UnknownModelError
from . import responses_events as objects
from . import responses_service as service
from . import responses_store as stored
from .headers import SESSION_HEADER, inline_images, retry_key, session_number
from .responses_schema import parse
from .schemas import invalid

bp = Blueprint("responses", __name__)
RESPONSE_HEADER = "X-PolyGenix-Response-Id"
PAGE, MOST_PER_PAGE = 20, 100


def _not_found(response_id: str) -> Response:
    return error_response(404, f"Response with id '{response_id}' not found.")


def _previous_not_found(response_id: str) -> Response:
    return error_response(
        400,
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        error_code="previous_response_not_found",
    )


def _provider_error(error: ProviderError, pending: service.Pending) -> Response:
    """The provider's failure as an error answer; the failed response is kept (stored), its
    id in X-PolyGenix-Response-Id."""
    if error.status == 422:  # the provider does not know the model
        response = error_response(404, error.message, param="model", error_code="model_not_found")
    else:
        response = provider_error_response(error)
    turn = pending.turn
    if turn.persist and turn.session is not None:
        response.headers[SESSION_HEADER] = str(turn.session.number)
        response.headers[RESPONSE_HEADER] = pending.base["id"]
    return response


@bp.post("/responses")
@inline_images
@required(keys=True, prepares=True)
@per_user
def create():
    asked = parse(request.get_json(), stored.resolver(current_user.id))
    number = session_number()
    key, retrying = retry_key(current_user.id)
    try:
        pending = service.prepare(current_user, asked, number, key, retrying)
    except service.PreviousNotFound:
        unless_deleted(current_user.id)
        return _previous_not_found(asked.previous_id)
    except service.Repeated as e:
        return _repeated(e, asked.stream)
    except UnknownModelError:
        message = unknown_model(current_user.id, asked.model)
        return error_response(404, message, param="model", error_code="model_not_found")
    try:
        if asked.stream:
            return _streamed(pending, service.streamed(pending))
        try:
            _, body = turns.answer(
                pending.turn, lambda _, completion: service.answered(pending, completion)
            )
        except ProviderError as e:
            pending.failed(e.status, e.message)
            return _provider_error(e, pending)
    except BaseException:
        pending.release()  # nothing was kept: a retry is answered anew
        raise
    turn = pending.turn
    headers = {SESSION_HEADER: str(turn.session.number)} if turn.persist else {}
    return body, 200, headers


def _repeated(repeat: service.Repeated, stream: bool) -> Response:
    """The answer to a retry of a call already answered (its response, as it was returned) or
    still under way (a 409 the SDKs retry)."""
    if repeat.found is service.retries.Found.BUSY:
        return error_response(
            409,
            "A request with this Idempotency-Key (or this very body, retried) is still being"
            " answered; retry once it is done.",
            error_code="request_in_progress",
            headers={"Retry-After": "1"},
        )
    row = repeat.row
    headers = {SESSION_HEADER: str(stored.session_number(row))}
    if not stream:
        return Response(json.dumps(row.body), mimetype="application/json", headers=headers)
    headers |= {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(objects.replay(row.body), mimetype="text/event-stream", headers=headers)


def _streamed(pending: service.Pending, events: objects.ResponseEvents) -> Response:
    turn = pending.turn
    try:
        started = streaming.opened(turn)
    except ProviderError as e:
        pending.failed(e.status, e.message)
        return _provider_error(e, pending)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if turn.persist:
        headers[SESSION_HEADER] = str(turn.session.number)
    return Response(
        stream_with_context(_relayed(streaming.relay(started, events), pending, events)),
        mimetype="text/event-stream",
        headers=headers,
    )


def _relayed(relay, pending: service.Pending, events: objects.ResponseEvents):
    """The stream's events; a client that goes away leaves its response failed (the part of
    the reply it was sent kept, as for any stream cut short)."""
    try:
        yield from relay
    finally:
        if not events.ended:
            events.error(CLIENT_CLOSED, streaming.DISCONNECTED)


@bp.get("/responses/<response_id>")
@required(keys=True)
def retrieve(response_id: str):
    if request.args.get("stream") in ("true", "1"):
        invalid("stream", "Streaming a stored response again is not supported by this server.")
    row = stored.find(current_user.id, response_id)
    if row is None:
        return _not_found(response_id)
    return row.body


@bp.delete("/responses/<response_id>")
@required(keys=True)
def remove(response_id: str):
    row = stored.find(current_user.id, response_id)
    if row is None:
        return _not_found(response_id)
    stored.remove(row)
    return {"id": response_id, "object": "response", "deleted": True}


def _limit() -> int:
    raw = request.args.get("limit", str(PAGE))
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MOST_PER_PAGE:
        invalid("limit", f"limit must be a whole number from 1 to {MOST_PER_PAGE}.")
    return int(raw)


@bp.get("/responses/<response_id>/input_items")
@required(keys=True)
def input_items(response_id: str):
    limit = _limit()
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        invalid("order", "order must be asc or desc.")
    row = stored.find(current_user.id, response_id)
    if row is None:
        return _not_found(response_id)
    items = stored.listed(row)
    items = items if order == "asc" else list(reversed(items))
    after = request.args.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            invalid("after", f"No input item with id '{after}' in this response.")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
