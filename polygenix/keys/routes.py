from flask.views import MethodView
from flask_smorest import abort

from ..api import Blueprint, NoticeSchema
from ..auth.access import current_user
from ..models import MAX_ID
from .schemas import KeyCreateSchema, KeySchema, NewKeySchema, RevokedSchema
from .service import create_key, live_keys, revoke_all_keys, revoke_key, revoked_notice

blp = Blueprint(
    "keys",
    __name__,
    url_prefix="/api/keys",
    description="Personal API keys, for /v1 and the chat endpoints (managed with a login).",
)


@blp.route("")
class Keys(MethodView):
    @blp.login_required
    @blp.arguments(KeyCreateSchema())
    @blp.response(201, NewKeySchema)
    @blp.errors(403, 409)
    def post(self, data):
        """Make a personal API key: its secret is shown in this answer only

        At most API_KEYS_PER_USER (20) live keys: one more is a 409. Keys work as bearer
        credentials on /v1 and the chat endpoints, never on account management (403).
        """
        api_key, secret = create_key(current_user, data["name"], data.get("expires_in_days"))
        return {
            "id": api_key.id,
            "name": api_key.name,
            "key": secret,
            "prefix": api_key.prefix,
            "created_at": api_key.created_at,
            "expires_at": api_key.expires_at,
        }

    @blp.login_required
    @blp.errors(403)
    @blp.response(200, KeySchema(many=True))
    def get(self):
        """Your live API keys (never their secrets)"""
        return live_keys(current_user.id)

    @blp.login_required
    @blp.errors(403)
    @blp.response(200, RevokedSchema)
    def delete(self):
        """Revoke every one of your API keys at once

        Changing your password and logging out end your logins, not your API keys: this ends
        every key you have now (expired ones included, and counted in `revoked`).
        """
        revoked = revoke_all_keys(current_user.id)
        return {"message": revoked_notice(revoked), "revoked": revoked}


@blp.route(f"/<int(min=1, max={MAX_ID}):key_id>")
class Key(MethodView):
    @blp.login_required
    @blp.errors(403, 404)
    @blp.response(200, NoticeSchema)
    def delete(self, key_id):
        """Revoke one of your API keys"""
        if not revoke_key(key_id, current_user.id):
            abort(404, message="API key not found")
        return {"message": "API key revoked"}
