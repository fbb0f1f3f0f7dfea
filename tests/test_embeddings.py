"""POST /v1/embeddings: each provider's embeddings API spoken as its reference defines it (the
fake provider checks the fields and the batch limits), the official `openai` SDK's float and
base64 embeddings, input order kept across batches, the models listed, and governance: model
access, budgets, usage per model, and nothing stored as chat history."""

import base64
import struct
from decimal import Decimal

import openai
import pytest
from genai_prices import Usage, calc_price

from tests.fake_embeddings import tokens, vector
from tests.helpers import bearer, embed, serving, usage_rows
from tests.openai_sdk import openai_sdk
from tests.provider_setup import key_of

DEFAULTS = {
    "openai": "text-embedding-3-small",
    "mistral": "mistral-embed",
    "gemini": "gemini-embedding-001",
    "ollama": "embeddinggemma",
    "openai-compatible": "local-embed",  # set by the `app` fixture below
}
PATHS = {
    "openai": "/v1/embeddings",
    "mistral": "/v1/embeddings",
    "gemini": "/v1beta/models/gemini-embedding-001:batchEmbedContents",
    "ollama": "/api/embed",
    "openai-compatible": "/v1/embeddings",
}
TEXTS = ["The sky is blue.", "Le ciel est bleu.", "空は青い。"]


@pytest.fixture
def app(make_app, provider_config):
    return make_app(provider_config | {"OPENAI_COMPATIBLE_EMBEDDING_MODEL": "local-embed"})


def estimated(texts) -> int:
    """What PolyGenix counts for texts whose tokens the provider did not count."""
    return sum(-(-len(t) // 4) for t in texts)


def float32s(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def expected_request(name: str, texts: list, dimensions=None) -> dict:
    """The body each provider's reference asks for."""
    model = DEFAULTS[name]
    if name == "gemini":
        requests = []
        for text in texts:
            request = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
            if dimensions is not None:
                request["outputDimensionality"] = dimensions
            requests.append(request)
        return {"requests": requests}
    body = {"model": model, "input": texts}
    if dimensions is not None:
        body["output_dimension" if name == "mistral" else "dimensions"] = dimensions
    return body


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_each_provider_is_asked_in_its_own_format(client, ada, fake, name):
    response = embed(client, ada, model=name, input=TEXTS)
    assert response.status_code == 200, response.json
    [call] = fake.requests
    assert call.path == PATHS[name]
    assert call.body == expected_request(name, TEXTS)
    headers = {k.lower(): v for k, v in call.headers.items()}
    if name == "gemini":
        assert headers["x-goog-api-key"] == key_of("gemini") and "authorization" not in headers
    elif name in ("openai", "mistral"):
        assert headers["authorization"] == f"Bearer {key_of(name)}"
    else:
        assert "authorization" not in headers
    body = response.json
    assert body["object"] == "list" and body["model"] == f"{name}/{DEFAULTS[name]}"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert {d["object"] for d in body["data"]} == {"embedding"}
    assert [d["embedding"] for d in body["data"]] == [vector(t) for t in TEXTS]
    # Gemini counts no tokens: PolyGenix counts 4 characters a token.
    used = estimated(TEXTS) if name == "gemini" else sum(tokens(t) for t in TEXTS)
    assert body["usage"] == {"prompt_tokens": used, "total_tokens": used}


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_dimensions_reach_each_provider_under_its_own_name(client, ada, fake, name):
    response = embed(client, ada, model=name, input="one", dimensions=5)
    assert response.status_code == 200, response.json
    assert fake.requests[-1].body == expected_request(name, ["one"], dimensions=5)
    assert response.json["data"][0]["embedding"] == vector("one", 5)


@pytest.fixture
def server(app):
    with serving(app) as base:
        yield base


def test_the_sdk_gets_floats_in_input_order(sdk, fake):
    result = sdk.embeddings.create(
        model="openai/text-embedding-3-small", input=TEXTS, encoding_format="float"
    )
    assert [d.embedding for d in result.data] == [vector(t) for t in TEXTS]
    assert [d.index for d in result.data] == [0, 1, 2]
    assert result.model == "openai/text-embedding-3-small"
    assert result.usage.prompt_tokens == result.usage.total_tokens == sum(map(tokens, TEXTS))
    assert fake.requests[-1].body == {"model": "text-embedding-3-small", "input": TEXTS}


def test_base64_passes_through_as_openai_sends_it(sdk, fake):
    # The SDK's default: it asks for base64 and decodes it itself.
    result = sdk.embeddings.create(model="openai", input="hello", dimensions=6)
    assert result.data[0].embedding == vector("hello", 6)
    assert fake.requests[-1].body == {
        "model": "text-embedding-3-small",
        "input": ["hello"],
        "dimensions": 6,
        "encoding_format": "base64",
    }
    raw = sdk.embeddings.create(model="openai", input=TEXTS, encoding_format="base64")
    assert [float32s(d.embedding) for d in raw.data] == [vector(t) for t in TEXTS]


@pytest.mark.parametrize("name", ["gemini", "mistral", "ollama", "openai-compatible"])
def test_base64_is_made_from_numbers_where_the_provider_sends_numbers(sdk, fake, name):
    raw = sdk.embeddings.create(model=name, input=TEXTS, encoding_format="base64")
    assert [float32s(d.embedding) for d in raw.data] == [vector(t) for t in TEXTS]
    assert "encoding_format" not in fake.requests[-1].body
    decoded = sdk.embeddings.create(model=name, input=TEXTS)  # the SDK's default, decoded
    assert [d.embedding for d in decoded.data] == [vector(t) for t in TEXTS]


def test_token_ids_pass_through_to_providers_that_take_them(client, ada, fake):
    for given, sent in (([[1, 2, 3], [4, 5]], [[1, 2, 3], [4, 5]]), ([7, 8, 9], [[7, 8, 9]])):
        response = embed(client, ada, model="openai", input=given)
        assert response.status_code == 200, response.json
        assert fake.requests[-1].body["input"] == sent
        assert [d["embedding"] for d in response.json["data"]] == [vector(s) for s in sent]
        assert response.json["usage"]["prompt_tokens"] == sum(len(s) for s in sent)


@pytest.mark.parametrize("name", ["mistral", "gemini", "ollama"])
def test_token_ids_are_a_400_where_the_provider_takes_text_only(client, ada, fake, name):
    response = embed(client, ada, model=name, input=[[1, 2, 3]])
    assert response.status_code == 400
    assert response.json["error"]["param"] == "input"
    assert f"{name} takes text only" in response.json["error"]["message"]
    assert fake.requests == []


def inputs(count: int) -> list[str]:
    return [f"short string number {n}" for n in range(count)]


@pytest.mark.parametrize(
    ("name", "largest"),
    [("openai", 2048), ("mistral", 512), ("gemini", 100), ("ollama", 2048)],
)
def test_2048_inputs_in_batches_the_provider_takes_in_input_order(client, ada, fake, name, largest):
    texts = inputs(2048)
    response = embed(client, ada, model=name, input=texts)
    assert response.status_code == 200, response.json
    sizes = [len(r.body.get("input") or r.body.get("requests")) for r in fake.requests]
    assert sum(sizes) == 2048 and max(sizes) <= largest
    # Every batch but the last is as full as the provider's limits allow.
    assert len(sizes) >= 2048 // largest
    data = response.json["data"]
    assert [d["index"] for d in data] == list(range(2048))
    assert [d["embedding"] for d in data] == [vector(t) for t in texts]
    used = estimated(texts) if name == "gemini" else sum(map(tokens, texts))
    assert response.json["usage"]["prompt_tokens"] == used


def test_mistral_batches_keep_under_its_token_limit(client, ada, fake):
    """Long inputs: Mistral's 16,384 tokens a request bind before its 512 inputs do."""
    texts = [f"{n} " + "word " * 2000 for n in range(40)]  # about 2,500 tokens each
    response = embed(client, ada, model="mistral", input=texts)
    assert response.status_code == 200, response.json
    assert len(fake.requests) > 1
    assert all(sum(map(tokens, r.body["input"])) <= 16_384 for r in fake.requests)
    assert [d["embedding"] for d in response.json["data"]] == [vector(t) for t in texts]


def test_an_openai_answer_out_of_order_is_put_in_order(client, ada, fake):
    data = [{"object": "embedding", "index": i, "embedding": vector(TEXTS[i])} for i in (2, 0, 1)]
    fake.reply(body={"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 3}})
    response = embed(client, ada, model="openai", input=TEXTS)
    assert [d["embedding"] for d in response.json["data"]] == [vector(t) for t in TEXTS]


def test_embedding_models_are_listed_and_their_default_is_a_setting(
    make_app, provider_config, auth
):
    client = make_app(
        provider_config | {"GEMINI_EMBEDDING_MODEL": "text-embedding-005"}
    ).test_client()
    ada = auth.register(client=client)
    ids = {m["id"] for m in client.get("/v1/models", headers=ada).json["data"]}
    assert {
        "openai/text-embedding-3-small",
        "mistral/mistral-embed",
        "gemini/text-embedding-005",
        "ollama/embeddinggemma",
    } <= ids
    # openai-compatible has no default embedding model unless one is set.
    assert not any(i.startswith("openai-compatible/") and "embed" in i for i in ids)
    assert client.get("/v1/models/gemini/text-embedding-005", headers=ada).status_code == 200
    # The native list is of chat models only.
    native = {m["id"] for m in client.get("/api/ai_chat/models", headers=ada).json}
    assert "openai/text-embedding-3-small" not in native
    response = embed(client, ada, model="gemini", input="x")
    assert response.json["model"] == "gemini/text-embedding-005"


def test_any_provider_model_id_is_passed_through(client, ada, fake):
    response = embed(client, ada, model="ollama/nomic-embed-text:v1.5", input="x")
    assert response.status_code == 200
    assert fake.requests[-1].body["model"] == "nomic-embed-text:v1.5"
    assert response.json["model"] == "ollama/nomic-embed-text:v1.5"


@pytest.mark.parametrize("model", ["groq", "anthropic/claude-haiku-4-5", "echo", "deepseek r1"])
def test_a_provider_without_embeddings_is_a_400_naming_model(sdk, fake, model):
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.embeddings.create(model=model, input="x")
    assert raised.value.body["param"] == "model"
    assert "has no embeddings API" in raised.value.body["message"]
    assert fake.requests == []


def test_an_unknown_model_is_model_not_found(sdk, fake):
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.embeddings.create(model="nowhere/at-all", input="x")
    assert raised.value.body["code"] == "model_not_found"
    fake.reply(status=404, body={"error": {"message": "The model does not exist"}})
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.embeddings.create(model="openai/text-embedding-9", input="x")
    assert raised.value.body["code"] == "model_not_found"


# --- governance ----------------------------------------------------------------------------


def test_usage_and_cost_per_model_and_no_history(client, ada, fake):
    for _ in range(2):
        assert embed(client, ada, model="openai", input=TEXTS).status_code == 200
    assert embed(client, ada, model="gemini", input=TEXTS).status_code == 200
    used = sum(map(tokens, TEXTS))
    price = calc_price(Usage(input_tokens=used), "text-embedding-3-small", provider_id="openai")
    rows = {r["model"]: r for r in usage_rows(client, ada)}
    assert rows["openai/text-embedding-3-small"] == {
        "model": "openai/text-embedding-3-small",
        "calls": 2,
        "prompt_tokens": 2 * used,
        "completion_tokens": 0,
        "cost_usd": pytest.approx(float(2 * price.total_price)),
    }
    gemini = rows["gemini/gemini-embedding-001"]
    assert (gemini["calls"], gemini["prompt_tokens"]) == (1, estimated(TEXTS))
    assert Decimal(str(gemini["cost_usd"])) > 0
    assert client.get("/api/ai_chat/history", headers=ada).json == []


def test_the_model_the_provider_names_is_the_one_counted(client, ada, fake):
    fake.reply(
        body={
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
            "model": "text-embedding-3-small-2026",
            "usage": {"prompt_tokens": 9, "total_tokens": 9},
        }
    )
    response = embed(client, ada, model="openai", input="x")
    assert response.json["model"] == "openai/text-embedding-3-small"
    assert response.json["data"][0]["embedding"] == [0.5, 0.25]
    [row] = usage_rows(client, ada)
    assert (row["model"], row["prompt_tokens"]) == ("openai/text-embedding-3-small-2026", 9)


def test_another_users_key_counts_for_that_user_alone(client, ada, bob, fake):
    key = client.post("/api/keys", headers=bob, json={"name": "bob"}).json["key"]
    assert embed(client, bearer(key), model="openai", input="bob's text").status_code == 200
    assert usage_rows(client, ada) == []
    assert [r["calls"] for r in usage_rows(client, bob)] == [1]
    # A revoked key, and then a deleted account's, are refused.
    key_id = client.get("/api/keys", headers=bob).json[0]["id"]
    client.delete(f"/api/keys/{key_id}", headers=bob)
    revoked = embed(client, bearer(key), model="openai", input="x")
    assert revoked.status_code == 401 and revoked.json["error"]["code"] == "invalid_api_key"
    key = client.post("/api/keys", headers=bob, json={"name": "again"}).json["key"]
    bob_id = client.get("/api/user/", headers=bob).json["id"]
    assert client.delete(f"/api/user/{bob_id}", headers=bob).status_code == 200
    assert embed(client, bearer(key), model="openai", input="x").status_code == 401
    assert len(fake.requests) == 1


def test_a_model_not_allowed_is_a_permission_error(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"MODEL_ALLOWLIST": ["openai/text-embedding-3-large"]})
    token = auth.tokens(client=app.test_client())["access_token"]
    with serving(app) as base:
        sdk = openai_sdk(base, token)
        with pytest.raises(openai.PermissionDeniedError) as raised:
            sdk.embeddings.create(model="openai", input="x")
        error = raised.value.body
        assert error["code"] == "model_not_allowed"
        assert error["message"] == (
            "Model 'openai/text-embedding-3-small' is not allowed for your account"
        )
        assert fake.requests == []
        ids = [m.id for m in sdk.models.list()]
        assert "openai/text-embedding-3-small" not in ids
        result = sdk.embeddings.create(model="openai/text-embedding-3-large", input="x")
        assert result.data[0].embedding == vector("x")


def test_a_used_up_budget_refuses_embeddings(make_app, provider_config, auth, fake):
    app = make_app(provider_config | {"TOKEN_BUDGET": "5/day"})
    client = app.test_client()
    ada = auth.register(client=client)
    first = embed(client, ada, model="openai", input=TEXTS)  # over the budget, but admitted
    assert first.status_code == 200
    refused = embed(client, ada, model="openai", input=TEXTS)
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "insufficient_quota"
    assert refused.headers["x-should-retry"] == "false" and int(refused.headers["Retry-After"]) > 0
    assert len(fake.requests) == 1
    # Chat turns share the budget.
    chat = client.post(
        "/v1/chat/completions",
        headers=ada,
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 429


def test_embeddings_have_a_rate_limit_of_their_own(make_app, provider_config, auth):
    client = make_app(provider_config | {"CHAT_RATE_LIMIT": "2/minute"}).test_client()
    ada = auth.register(client=client)
    assert [embed(client, ada, model="ollama", input="x").status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", headers=ada, json=chat).status_code == 200


def test_a_provider_not_configured_names_the_variable(make_app, provider_config, auth, fake):
    settings = provider_config | {"OPENAI_API_KEY": None}
    client = make_app(settings).test_client()
    ada = auth.register(client=client)
    response = embed(client, ada, model="openai", input="x")
    assert response.status_code == 503 and "OPENAI_API_KEY" in response.json["error"]["message"]
    response = embed(client, ada, model="openai-compatible", input="x")
    assert response.status_code == 503
    assert "OPENAI_COMPATIBLE_EMBEDDING_MODEL" in response.json["error"]["message"]
    assert fake.requests == []
    assert usage_rows(client, ada) == []


def test_an_input_over_a_token_limit_alone_is_sent_alone(client, ada, fake):
    texts = ["before", "x" * 20_000, "after"]  # 20,000 bytes: over Mistral's 16,384 bound
    response = embed(client, ada, model="mistral", input=texts)
    assert response.status_code == 200, response.json
    # Each neighbour would take the batch over the bound: three batches of one.
    assert sorted(r.body["input"] for r in fake.requests) == [["after"], ["before"], [texts[1]]]
    assert [d["embedding"] for d in response.json["data"]] == [vector(t) for t in texts]


def test_a_set_openai_compatible_embedding_model_is_listed_and_used(client, ada, fake):
    ids = {m["id"] for m in client.get("/v1/models", headers=ada).json["data"]}
    assert "openai-compatible/local-embed" in ids
    response = embed(client, ada, model="openai-compatible", input="x", encoding_format="base64")
    assert fake.requests[-1].body == {"model": "local-embed", "input": ["x"]}
    assert float32s(response.json["data"][0]["embedding"]) == vector("x")
