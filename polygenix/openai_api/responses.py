"""OpenAI's Responses API under /v1 (https://platform.openai.com/docs/api-reference/responses):
`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.

A response is a chat turn like any other (chat/turn.py), sent to the provider through the same
chat API PolyGenix speaks to it, so it works alike on every provider. Its context is the
`instructions`, the chain of responses `previous_response_id` continues (rebuilt from what
PolyGenix kept, responses_store.py), and the new input. Stored (`store`, the default), the
turn goes in one of the caller's sessions (the one the response it continues is in, else a new
one, or the session whose transcript its input continues) and the response is kept for its
owner; with `"store": false` nothing is kept (what the call used counts all the same).
"""

import time

from flask import Blueprint, Response, request, stream_with_context

from ..auth.access import current_user, required
from ..chat import streaming
from ..chat import turn as turns
from ..errors import error_response, provider_error_response
from ..governance.policy import unknown_model
from ..limits import per_user
from ..providers import ChatMessage, ProviderError, UnknownModelError, UnsupportedInput
from . import responses_events as objects
from . import responses_store as stored
from .responses_schema import Request, item_id, parse
from .schemas import invalid

bp = Blueprint("responses", __name__)
SESSION_HEADER = "X-PolyGenix-Session"
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


def _provider_error(error: ProviderError, turn: turns.Turn | None = None) -> Response:
    if error.status == 422:  # the provider does not know the model
        response = error_response(404, error.message, param="model", error_code="model_not_found")
    else:
        response = provider_error_response(error)
    if turn is not None and turn.persist and turn.session is not None:
        response.headers[SESSION_HEADER] = str(turn.session.number)
    return response


def _messages(asked: Request, earlier: list[ChatMessage]) -> list[ChatMessage]:
    system: list[ChatMessage] = []
    if asked.instructions:
        system = [{"role": "system", "content": asked.instructions}]
    return system + earlier + asked.messages


@bp.post("/responses")
@required(keys=True)
@per_user
def create():
    asked = parse(request.get_json())
    previous, number, earlier = None, None, []
    if asked.previous_id is not None:
        previous, number = stored.continued(current_user.id, asked.previous_id)
        if previous is None:
            return _previous_not_found(asked.previous_id)
        new = sum(len(m["content"]) for m in asked.messages) + len(asked.instructions or "")
        earlier = stored.context(previous, new)
    try:
        turn = turns.prepare_conversation(
            current_user,
            _messages(asked, earlier),
            asked.model,
            asked.options,
            number=number,
            persist=asked.store,
            streamed=asked.stream,
        )
    except UnknownModelError:
        message = unknown_model(current_user.id, asked.model)
        return error_response(404, message, param="model", error_code="model_not_found")
    turn.tooling = asked.tooling
    _check(turn)
    base = objects.response(item_id("resp"), int(time.time()), turn.model_name, asked.echo)
    previous_id = previous.id if previous is not None else None

    def keep(body_of):
        """Record the response with its turn (when the turn is stored)."""
        if not turn.persist:
            return None
        return lambda session_id, reply_id, reply: stored.add(
            turn.user_id, session_id, reply_id, asked.items, body_of(reply), previous_id
        )

    if asked.stream:
        events = objects.ResponseEvents(base)
        turn.on_store = keep(events.final)
        return _streamed(turn, events)
    try:
        completion = turns.complete(turn)
    except ProviderError as e:
        turns.store_failure(turn, e)
        return _provider_error(e, turn)
    status, details = objects.outcome(completion.finish_reason)
    used = objects.usage(
        completion.prompt_tokens,
        completion.completion_tokens,
        completion.cached_tokens,
        completion.reasoning_tokens,
    )
    output = objects.output(completion.content, completion.reasoning, status)
    body = base | {"status": status, "output": output, "usage": used, "incomplete_details": details}
    if status == "completed":
        body["completed_at"] = int(time.time())
    turn.on_store = keep(lambda reply: body)
    turns.store(turn, completion)
    headers = {SESSION_HEADER: str(turn.session.number)} if turn.persist else {}
    return body, 200, headers


def _check(turn: turns.Turn) -> None:
    """What the provider cannot take is a 400 before it is called (the call's budget
    reservation released)."""
    if turn.model is None:
        return
    try:
        turn.provider.check(turn.messages, turn.model, turn.tooling)
    except UnsupportedInput as e:
        turns.release_unsettled(turn)
        invalid("text" if e.field in ("response_format", "text") else "input", e.message)


def _streamed(turn: turns.Turn, events: objects.ResponseEvents) -> Response:
    try:
        started = streaming.opened(turn)
    except ProviderError as e:
        return _provider_error(e, turn)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if turn.persist:
        headers[SESSION_HEADER] = str(turn.session.number)
    return Response(
        stream_with_context(streaming.relay(started, events)),
        mimetype="text/event-stream",
        headers=headers,
    )


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
    items = list(row.items) if order == "asc" else list(reversed(row.items))
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
