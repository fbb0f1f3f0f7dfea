"""schemathesis hooks for tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

- Authentication: a freshly registered user, fetched again whenever a token stops working
  (fuzzing logs out, changes passwords and deletes users along the way); on the admin-only
  routes (`/api/admin/...`, `/api/user/all`), the admin the test made (FUZZ_ADMIN,
  `email:password`), logged in.
- Rules an OpenAPI schema cannot state, each a documented 422 with its own message: a common
  password, a model name no provider has, a refresh token that is not the caller's, a missing
  or wrong current password when changing one's own, a max_tokens over the model's cap, a
  report whose first day is after its last, more attachments than ATTACHMENTS_PER_MESSAGE, a
  search query with no letter or digit, an upload that is no whole image of the four types
  (judged by its bytes). Generated bodies avoid them where generation can be steered, and a
  "schema-valid request rejected" finding is dropped only when the 422 names one of them.
- A provider with no key on the fuzzed server answers its documented 503 naming the variable
  to set: not a server error.
"""

import os
import uuid

import requests
import schemathesis

from polygenix.user.schemas import common_passwords

BASE_URL = os.environ.get("FUZZ_BASE_URL", "")
ADMIN_EMAIL, _, ADMIN_PASSWORD = os.environ.get("FUZZ_ADMIN", "").partition(":")
# Admin-only routes answer anyone else 403 before reading a thing: fuzzed as the admin.
ADMIN_ROUTES = "^/api/(admin/|user/all$)"


@schemathesis.auth().apply_to(path_regex=ADMIN_ROUTES)
class Admin:
    def get(self, case, context):
        response = requests.post(
            BASE_URL + "/api/auth/login",
            data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            timeout=30,
        )
        return response.json()["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.auth().skip_for(path_regex=ADMIN_ROUTES)
class FreshUser:
    def get(self, case, context):
        response = requests.post(
            BASE_URL + "/api/auth/register",
            json={
                "name": "Fuzz",
                "email": f"fuzz-{uuid.uuid4().hex}@example.com",
                "password": "fuzzing secret",
            },
            timeout=30,
        )
        return response.json()["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


SEMANTIC_422 = (
    "this password is too common",
    "unknown model",
    "not a valid refresh token of yours",
    "current password",
    "max_tokens: must be at most",  # the cap depends on the model asked for
    "since: must not be after until",  # a report's days in order
    "model: missing data for required field",  # no model named, and the session has no default
    "send title, system_prompt or model",  # a session change must change something
    "only your own messages can be edited",
    "the message was superseded",
    "nothing to search for",  # a search query with no letter or digit
    "attachments per message",  # ATTACHMENTS_PER_MESSAGE, a setting
    "png, jpeg, gif or webp image",  # an upload is judged by its bytes
    "truncated or corrupt",
    "pixels",
)


@schemathesis.hook("filter_body")
def no_common_passwords(context, body):
    if isinstance(body, dict):
        for field in ("password", "current_password"):
            value = body.get(field)
            if isinstance(value, str) and value.strip().lower() in common_passwords():
                return False
    return True


@schemathesis.hook("filter_failure")
def keep_unless_a_documented_rule(context, failure, case, response):
    code = getattr(failure, "code", None)
    if code == "ST101" and response.status_code == 503:
        # A provider the fuzzed server has no key for: its documented 503, naming the variable
        # to set (the stateful phase takes model names from GET /api/ai_chat/models).
        try:
            return "is not configured" not in response.json().get("message", "")
        except ValueError:
            return True
    if code != "ST202" or response.status_code != 422:
        return True
    try:
        message = response.json().get("message", "")
    except ValueError:
        return True
    return not any(rule in message.lower() for rule in SEMANTIC_422)
