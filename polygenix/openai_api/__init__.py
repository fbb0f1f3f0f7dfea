"""OpenAI's Chat Completions and Models APIs under /v1, so that every OpenAI client (the
official SDKs, LangChain, Open WebUI, LibreChat, the `llm` CLI...) can use PolyGenix as its
base URL, with a personal API key (or an access token) as its key.

Each call is a chat turn like any other (chat/turn.py): the context is exactly the client's
messages, and the last one and the reply are stored in one of the caller's sessions (unless
`"store": false`): the one `X-PolyGenix-Session` names, else the one whose transcript the
conversation continues, else a new one. Errors take OpenAI's shape on every /v1 path
(errors.py).
"""

import time
import uuid

from flask import Blueprint, Response, request, stream_with_context

from ..auth.access import current_user, required
from ..catalog import catalogue
from ..chat import streaming
from ..chat import turn as turns
from ..errors import error_response, provider_error_response
from ..governance.policy import limits_for, unknown_model
from ..limits import per_user
from ..provider_registry import registry
from ..providers import ProviderError, UnknownModelError
from ..providers.messages import UnsupportedInput
from .embedding_service import with_embedding_models
from .embeddings import bp as embeddings_bp
from .events import ChunkEvents, finish_reason, tool_call
from .headers import SESSION_HEADER, inline_images
from .headers import retry_key as _retry_key
from .headers import session_number as _session_number
from .responses import bp as responses_bp
from .schemas import invalid, parse

bp = Blueprint("openai", __name__, url_prefix="/v1")
bp.register_blueprint(embeddings_bp)
bp.register_blueprint(responses_bp)


def _model_not_found(message: str) -> Response:
    return error_response(404, message, param="model", error_code="model_not_found")


@bp.post("/chat/completions")
@inline_images
@required(keys=True, prepares=True)
@per_user
def chat_completions():
    asked = parse(request.get_json(silent=False))
    retry_key, retrying = _retry_key(current_user.id)
    try:
        turn = turns.prepare_conversation(
            current_user,
            asked.messages,
            asked.model,
            asked.options,
            number=_session_number(),
            persist=asked.store,
            streamed=asked.stream,
            retry_key=retry_key,
            retrying=retrying,
            inline=list(asked.images),
            tooling=asked.tooling,
        )
    except UnknownModelError:
        return _model_not_found(unknown_model(current_user.id, asked.model))
    except UnsupportedInput as e:  # what the model's provider cannot take
        invalid(e.field, e.message)
    headers = {}
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if asked.stream:
        try:
            started = streaming.opened(turn)
        except ProviderError as e:
            return _provider_error(e)
        if turn.persist:
            headers[SESSION_HEADER] = str(turn.session.number)
        events = ChunkEvents(
            completion_id,
            created,
            turn.model_name,
            asked.include_usage,
            tools_allowed=asked.tooling.calls_allowed(),
        )
        return Response(
            stream_with_context(streaming.relay(started, events)),
            mimetype="text/event-stream",
            headers=headers | {"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    try:
        completion, _ = turns.answer(turn)
    except ProviderError as e:
        return _provider_error(e, turn)
    if turn.persist:
        headers[SESSION_HEADER] = str(turn.session.number)
    message = {"role": "assistant", "content": completion.content}
    if completion.tool_calls:
        message["content"] = completion.content or None
        message["tool_calls"] = [tool_call(call) for call in completion.tool_calls]
    if completion.reasoning:
        message["reasoning_content"] = completion.reasoning
    prompt, written = completion.prompt_tokens or 0, completion.completion_tokens or 0
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": turn.model_name,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(completion.finish_reason),
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": written,
            "total_tokens": prompt + written,
        },
    }
    return body, 200, headers


def _provider_error(error: ProviderError, turn: turns.Turn | None = None) -> Response:
    headers = {}
    if turn is not None and turn.persist and turn.session is not None:
        headers[SESSION_HEADER] = str(turn.session.number)
    if error.status == 422:  # the provider does not know the model
        response = _model_not_found(error.message)
    else:
        response = provider_error_response(error)
    response.headers.update(headers)
    return response


def _usable() -> list[dict]:
    """The models the caller may and can use now, and the aliases that lead to them."""
    limits = limits_for(current_user.id)
    entries = with_embedding_models([e for e in catalogue() if e["available"]])
    ids = {e["id"]: e["provider"] for e in entries if limits.allows(e["provider"], e["model"])}
    usable = {e["provider"] for e in entries}
    for alias, target in registry().aliases.items():
        try:
            provider, model = registry().resolve(target)
        except UnknownModelError:
            continue
        if provider.name in usable and limits.allows(provider.name, model):
            ids.setdefault(alias, provider.name)
    return [{"id": i, "object": "model", "created": 0, "owned_by": p} for i, p in ids.items()]


@bp.get("/models")
@required(keys=True)
def models():
    return {"object": "list", "data": _usable()}


@bp.get("/models/<path:model>")
@required(keys=True)
def model(model: str):
    for entry in _usable():
        if entry["id"] == model:
            return entry
    return _model_not_found(f"The model {model!r} does not exist or you do not have access to it.")
