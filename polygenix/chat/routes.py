from collections.abc import Iterator

from flask import Response, request, stream_with_context
from flask.views import MethodView
from flask_smorest import abort
from flask_smorest.exceptions import NotModified
from sqlalchemy import delete, update
from werkzeug.http import quote_etag

from .. import clock
from ..api import Blueprint, NoticeSchema
from ..auth.access import current_user, missing
from ..extensions import db
from ..governance.policy import allowed_catalogue, unknown_model
from ..limits import per_user
from ..models import MAX_ID, ChatSession
from ..provider_registry import registry
from ..providers import UnknownModelError
from ..security import REVALIDATE
from . import export, history, session_rows, streaming
from . import turn as turns
from .schemas import (
    ChatSessionResponseSchema,
    EditSchema,
    ExportAllArgsSchema,
    ExportArgsSchema,
    HistoryArgsSchema,
    HomeSchema,
    ListingArgsSchema,
    MessageCreateSchema,
    MessageResponseSchema,
    ModelSchema,
    RegenerateSchema,
    SearchArgsSchema,
    SearchResultSchema,
    SessionArgsSchema,
    SessionSummarySchema,
    SessionUpdateSchema,
    options_from,
)
from .search import EmptyQuery, search

blp = Blueprint(
    "chat",
    __name__,
    url_prefix="/api/ai_chat",
    description="Chat with a model; read, rename and delete your sessions.",
)

CHAT_ID = f"<int(min=1, max={MAX_ID}):chat_id>"
MESSAGE_ID = f"<int(min=1, max={MAX_ID}):message_id>"
PAGE = {"page_size": 20, "max_page_size": 100}


def _page(pagination_parameters) -> int | None:
    """The page asked for; None when neither `page` nor `page_size` was given: then the whole
    list, as the original answered (its web client shows what one unpaged call returns)."""
    if "page" in request.args or "page_size" in request.args:
        return pagination_parameters.page
    return None


class _NotModified(NotModified):
    """A 304 with the headers a fresh answer would have (the error handler sends `data`)."""

    def __init__(self, headers: dict[str, str]):
        super().__init__()
        self.data = {"headers": headers}


def _conditional(user) -> tuple[dict[str, str], int]:
    """A 304 for a client whose copy is current; otherwise the headers of a fresh answer, and
    the number of the user's sessions."""
    tag, total = history.etag(user, request.query_string.decode("latin-1"))
    headers = {"ETag": quote_etag(tag), "Cache-Control": REVALIDATE}
    if request.if_none_match.contains(tag):
        raise _NotModified(headers)
    return headers, total


@blp.route("/home")
class Home(MethodView):
    @blp.login_required(keys=True)
    @blp.response(200, HomeSchema)
    def get(self):
        """Welcome message for the caller"""
        return {
            "data": {
                "message": f"Welcome to your Custom AI Application PolyGenix - {current_user.name}",
                "submsg": "Select the model to get started",
            }
        }


@blp.route("/models")
class Models(MethodView):
    @blp.login_required(keys=True)
    @blp.response(200, ModelSchema(many=True))
    def get(self):
        """The models you may use, and whether each can be used now

        Each provider's configured models, and what each configured provider itself offers
        (asked at most every MODEL_LIST_TTL seconds), that your account is allowed
        (MODEL_ALLOWLIST, or your own list). A provider that cannot be reached shows its
        configured models with `available: false` and the `unavailable_reason`.
        """
        return allowed_catalogue(current_user.id)


REPLY_OR_STREAM = {
    "200": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/MessageResponse"}},
            "text/event-stream": {
                # One Server-Sent Event; `data` is the JSON described above.
                "schema": {
                    "type": "object",
                    "properties": {
                        "event": {"enum": ["start", "reasoning", "delta", "done", "error"]},
                        "data": {"type": "string"},
                    },
                }
            },
        }
    }
}


def _streamed(data: dict) -> bool:
    """Whether the reply is to be streamed: `stream`, or Accept: text/event-stream."""
    return data["stream"] or "text/event-stream" in request.headers.get("Accept", "")


def _answer(turn: turns.Turn, data: dict):
    """A prepared turn answered: streamed or whole."""
    if _streamed(data):
        return Response(
            stream_with_context(streaming.relay(streaming.opened(turn), streaming.Events())),
            mimetype="text/event-stream",
            # X-Accel-Buffering: nginx would otherwise hold the events back.
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    return turns.answer(turn)[1]


@blp.route("/request")
class ChatRequest(MethodView):
    @blp.login_required(keys=True, prepares=True)
    @per_user
    @blp.doc(responses=REPLY_OR_STREAM)
    @blp.arguments(MessageCreateSchema())
    @blp.response(200, MessageResponseSchema)
    @blp.errors(429, 502, 503, 504)
    def post(self, data):
        """Send a message to a model and get its reply

        `session_id` null or absent starts a new session with your next free number; a number
        you have no session with starts a new session with that number; one you have continues it.
        `model` may be left out for a session with a default model (PATCH the session).

        Provider failures: 422 unknown model, or model not found at the provider; 429 the
        provider is rate limiting (with `Retry-After`); 502 it rejected the configured key or
        the request, or answered with no usable reply; 503 it is not configured (the message
        names the variable to set) or cannot be reached; 504 it did not answer within
        PROVIDER_TIMEOUT. Your message stays in the session, flagged `failed` with the `error`.

        **Streaming.** With `"stream": true` (or `Accept: text/event-stream`) the answer is
        `200 text/event-stream`, relaying the model's text as it arrives:

            event: start
            data: {"session_id": 12, "model": "groq/llama-3.3-70b-versatile", "user_message_id": 41}

            event: delta
            data: {"content": "Hel"}

            event: done
            data: <the MessageResponse above, with usage and finish_reason>

        A failure after the stream began ends it with `event: error` whose data is the error
        envelope; the text received so far is stored, flagged `incomplete`. Failures before it
        began (validation, auth, model, provider errors up to its first byte) are ordinary JSON
        errors. `: keep-alive` comments come at least every STREAM_KEEPALIVE_SECONDS (15) while
        the model is silent. If the client disconnects, the provider is hung up on and the
        partial reply stored, flagged `incomplete`.
        """
        turn = turns.prepare(
            current_user,
            data["content"],
            data.get("model"),
            data.get("session_id"),
            options_from(data),
            streamed=_streamed(data),
            attachment_ids=data["attachment_ids"],
        )
        return _answer(turn, data)


@blp.route(f"/{CHAT_ID}/regenerate")
class Regenerate(MethodView):
    @blp.login_required(keys=True, prepares=True)
    @per_user
    @blp.doc(responses=REPLY_OR_STREAM)
    @blp.arguments(RegenerateSchema(), required=False)
    @blp.response(200, MessageResponseSchema)
    @blp.errors(404, 409, 429, 502, 503, 504)
    def post(self, data, chat_id):
        """Answer the session's last message again

        The new reply replaces the earlier one, which is kept, marked `superseded`. Without
        `model`: the session's default model, else the model of the reply it replaces. The
        body is optional; it takes the generation options and `stream` of /request. If the
        model call fails, nothing changes (the earlier reply stays current) and the error is
        answered as /request answers it. 409: the session changed meanwhile (another message
        followed, or an earlier one was edited).
        """
        turn = turns.prepare_again(
            current_user,
            chat_id,
            data.get("model"),
            options_from(data),
            streamed=_streamed(data),
            attachment_ids=data.get("attachment_ids"),
        )
        return _answer(turn, data)


@blp.route(f"/{CHAT_ID}/messages/{MESSAGE_ID}")
class EditMessage(MethodView):
    @blp.login_required(keys=True, prepares=True)
    @per_user
    @blp.doc(responses=REPLY_OR_STREAM)
    @blp.arguments(EditSchema())
    @blp.response(200, MessageResponseSchema)
    @blp.errors(404, 409, 429, 502, 503, 504)
    def put(self, data, chat_id, message_id):
        """Edit one of your messages and get a new reply

        The message keeps its `id` and takes the new `content`; every message after it is
        marked `superseded`, and a new reply is generated and returned, as regenerate does
        (same options). If the model call fails, the edit is kept and the message flagged
        `failed`. A reply cannot be edited (422); a message not in your session is a 404.
        """
        turn = turns.prepare_again(
            current_user,
            chat_id,
            data.get("model"),
            options_from(data),
            message_id=message_id,
            content=data["content"],
            streamed=_streamed(data),
            attachment_ids=data.get("attachment_ids"),
        )
        return _answer(turn, data)


@blp.route("/history")
class History(MethodView):
    @blp.login_required(keys=True)
    @blp.arguments(HistoryArgsSchema(), location="query")
    @blp.response(200, ChatSessionResponseSchema(many=True))
    @blp.paginate(**PAGE)
    def get(self, args, pagination_parameters):
        """Your sessions, latest activity first, each with its messages oldest first

        `order=created`: newest first instead. Without `page` and `page_size`, every session;
        with either, one page. Superseded messages only with `include_superseded=true`; a /v1
        tool loop's calls and results only with `include_tools=true`. The
        `ETag` answers `If-None-Match` with 304 while nothing shown has changed.
        """
        p = pagination_parameters
        headers, p.item_count = _conditional(current_user)
        page = _page(p)
        sessions = history.history(
            current_user,
            page,
            p.page_size,
            args["order"],
            args["include_superseded"],
            args["include_tools"],
        )
        if page is None:
            p.page_size = max(p.item_count, 1)
        return sessions, headers


@blp.route("/sessions")
class Sessions(MethodView):
    @blp.login_required(keys=True)
    @blp.arguments(ListingArgsSchema(), location="query")
    @blp.response(200, SessionSummarySchema(many=True))
    @blp.paginate(**PAGE)
    def get(self, args, pagination_parameters):
        """Your sessions, latest activity first, with message counts but no messages

        `order=created`: newest first instead. Without `page` and `page_size`, every session;
        with either, one page. The `ETag` answers `If-None-Match` with 304 while nothing
        shown has changed.
        """
        p = pagination_parameters
        headers, p.item_count = _conditional(current_user)
        page = _page(p)
        sessions = history.summaries(current_user, page, p.page_size, args["order"])
        if page is None:
            p.page_size = max(p.item_count, 1)
        return sessions, headers


@blp.route("/export")
class ExportAll(MethodView):
    @blp.login_required(keys=True)
    @blp.arguments(ExportAllArgsSchema(), location="query")
    @blp.doc(
        responses={
            "200": {
                "description": "All your sessions as a file to download",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "sessions": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/ChatSessionResponse"},
                                }
                            },
                        }
                    },
                    "application/zip": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        }
    )
    def get(self, args):
        """Download all your sessions: one JSON document, or a zip of Markdown transcripts

        Oldest first, streamed as they are read. Superseded messages are left out unless
        `include_superseded=true`, tool calls and results unless `include_tools=true`; a reply
        still being streamed is always left out.
        """
        sessions = export.all_sessions(
            current_user.id, args["include_superseded"], args["include_tools"]
        )
        body: Iterator[str] | Iterator[bytes]
        if args["format"] == "json":
            body, mimetype, suffix = export.json_document(sessions), "application/json", "json"
        else:
            body, mimetype, suffix = export.markdown_zip(sessions), "application/zip", "zip"
        return Response(
            stream_with_context(body),
            mimetype=mimetype,
            headers={"Content-Disposition": f'attachment; filename="polygenix-chats.{suffix}"'},
        )


@blp.route("/search")
class Search(MethodView):
    @blp.login_required(keys=True)
    @blp.arguments(SearchArgsSchema(), location="query")
    @blp.errors(422)
    @blp.response(200, SearchResultSchema(many=True))
    @blp.paginate(**PAGE)
    def get(self, args, pagination_parameters):
        """Search your messages and session titles, best match first

        `q` (1–500 characters): words must all appear (any form of them: `running` finds
        `runs`), `"a phrase"` in that order, `this or that` either, `-word` not. Any other
        character is text. Each result's `snippet` is HTML: the text escaped, the matched
        words in `<mark>`. A title match has null `message_id` and `is_bot`. A query with no
        letter or digit is a 422.
        """
        p = pagination_parameters
        try:
            p.item_count, results = search(current_user.id, args["q"], p.page, p.page_size)
        except EmptyQuery as e:
            abort(422, message=f"Invalid input: query.q: {e}", errors={"query": {"q": [str(e)]}})
        return results


@blp.route(f"/{CHAT_ID}/export")
class Export(MethodView):
    @blp.login_required(keys=True)
    @blp.arguments(ExportArgsSchema(), location="query")
    @blp.errors(404)
    @blp.doc(
        responses={
            "200": {
                "description": "The session as a file to download",
                "content": {
                    "text/markdown": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            }
        }
    )
    def get(self, args, chat_id):
        """Download one of your sessions as a Markdown transcript or JSON"""
        session = history.session_with_messages(
            history.own_session_or_404(current_user, chat_id),
            args["include_superseded"],
            args["include_tools"],
        )
        if args["format"] == "json":
            body, mimetype, suffix = export.session_json(session), "application/json", "json"
        else:
            body, mimetype, suffix = export.as_markdown([session]), "text/markdown", "md"
        return Response(
            body,
            mimetype=mimetype,
            headers={
                "Content-Disposition": f'attachment; filename="polygenix-chat-{chat_id}.{suffix}"'
            },
        )


@blp.route(f"/{CHAT_ID}")
class Session(MethodView):
    @blp.login_required(keys=True)
    @blp.arguments(SessionArgsSchema(), location="query")
    @blp.errors(404)
    @blp.response(200, ChatSessionResponseSchema)
    def get(self, args, chat_id):
        """One of your sessions with its messages

        Superseded messages only with `include_superseded=true`; a /v1 tool loop's calls and
        results only with `include_tools=true`.
        """
        session = history.own_session_or_404(current_user, chat_id)
        return history.session_with_messages(
            session, args["include_superseded"], args["include_tools"]
        )

    @blp.login_required(keys=True)
    @blp.arguments(SessionUpdateSchema())
    @blp.errors(404)
    @blp.response(200, SessionSummarySchema)
    def patch(self, data, chat_id):
        """Rename one of your sessions, or set its instructions or default model

        `system_prompt` (null clears it) replaces SYSTEM_PROMPT for this session; `model`
        (null clears it) is used by requests for this session that name no model. An unknown
        model is a 422.
        """
        if data.get("model") is not None:
            try:
                registry().resolve(data["model"])
            except UnknownModelError:
                message = unknown_model(current_user.id, data["model"])
                abort(422, message=message, errors={"json": {"model": [message]}})
        session = history.own_session_or_404(current_user, chat_id)
        # Read before the write, whose commit is the last thing done: an error answered after
        # it would report a failed change that was in fact applied.
        changed_session = history.summary(session) | data
        changed = session_rows.changed(
            update(ChatSession)
            .where(ChatSession.id == session.id)
            .values(**data, changed_at=clock.now())
        )
        db.session.commit()
        if changed != 1:  # deleted meanwhile, or the account was
            missing(current_user.id, "Chat session not found")
        return changed_session

    @blp.login_required(keys=True)
    @blp.errors(404)
    @blp.response(200, NoticeSchema)
    def delete(self, chat_id):
        """Delete one of your sessions and all its messages"""
        session = history.own_session_or_404(current_user, chat_id)
        # The messages go with it through the foreign key's ON DELETE CASCADE.
        db.session.execute(delete(ChatSession).where(ChatSession.id == session.id))
        db.session.commit()
        return {"message": "Chat session deleted successfully"}
