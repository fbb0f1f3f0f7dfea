"""The official `openai` SDK against a real HTTP server of the app whose providers are the fake
provider server: `server`, Ada's API `key`, her `sdk` and Bob's `bob_sdk`.

A module that overrides `client` (or `app`) makes the keys on that app; `server` always serves
`provider_app`.
"""

import openai
import pytest

from tests.helpers import serving


def openai_sdk(base: str, key: str, max_retries: int = 0) -> openai.OpenAI:
    """The SDK against the server at `base`; by default no retries, so that each failure
    reaches the test as the SDK's own exception."""
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=max_retries)


def api_key(client, headers, name="sdk") -> str:
    """A new API key of the user whose bearer headers these are."""
    return client.post("/api/keys", headers=headers, json={"name": name}).json["key"]


@pytest.fixture
def server(provider_app):
    """`provider_app` over real HTTP: its base URL."""
    with serving(provider_app) as base:
        yield base


@pytest.fixture
def key(client, ada):
    """An API key of Ada's."""
    return api_key(client, ada)


@pytest.fixture
def sdk(server, key):
    """The SDK as Ada."""
    return openai_sdk(server, key)


@pytest.fixture
def bob_sdk(server, client, bob):
    """The SDK as Bob."""
    return openai_sdk(server, api_key(client, bob))
