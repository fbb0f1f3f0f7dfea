"""Provider settings pointing every provider at the fake provider server."""

import pytest

from config import PROVIDER_NAMES, provider_prefix
from tests.fake_provider import FakeProvider

SYSTEM = "Be brief."
BASE_PATHS = {
    "groq": "/openai/v1",
    "openai": "/v1",
    "deepseek": "/v1",
    "mistral": "/v1",
    "openrouter": "/api/v1",
    "anthropic": "",
    "gemini": "/v1beta",
    "ollama": "",
    "openai-compatible": "/v1",
}
DEFAULT_MODELS = {
    "groq": "llama-3.3-70b-versatile",
    "openai": "gpt-4.1-mini",
    "deepseek": "deepseek-chat",
    "mistral": "mistral-small-latest",
    "openrouter": "openai/gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "ollama": "llama3.2",
    "openai-compatible": "local-model",
}
OPENAI_FAMILY = {"groq", "openai", "deepseek", "mistral", "openrouter", "openai-compatible"}


def key_of(name):
    return f"test-key-{name}"


@pytest.fixture(scope="session")
def fake():
    server = FakeProvider()
    yield server
    server.close()


@pytest.fixture
def provider_config(config, fake):
    fake.reset()
    settings = {
        "SYSTEM_PROMPT": SYSTEM,
        "PROVIDER_MAX_RETRY_WAIT": 0.05,
        "PROVIDER_TIMEOUT": 5.0,
        "OPENAI_COMPATIBLE_DEFAULT_MODEL": "local-model",
    }
    for name in PROVIDER_NAMES:
        prefix = provider_prefix(name)
        settings[f"{prefix}_BASE_URL"] = fake.url + BASE_PATHS[name]
        if name not in {"ollama", "openai-compatible"}:
            settings[f"{prefix}_API_KEY"] = key_of(name)
    return config | settings


@pytest.fixture
def provider_app(make_app, provider_config):
    """An app whose every provider is the fake provider server."""
    return make_app(provider_config)
