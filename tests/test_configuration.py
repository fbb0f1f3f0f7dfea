"""docs/configuration.md and .env.example against what the code reads: every setting documented
once, with its real default, and nothing documented that nothing reads."""

import re

import pytest

from config import EMBEDDING_PROVIDERS, PROVIDER_NAMES, load_config, provider_prefix
from polygenix.providers.embedder import EMBEDDINGS
from tests.helpers import ROOT

DOC = (ROOT / "docs" / "configuration.md").read_text()
EXAMPLE = (ROOT / ".env.example").read_text()
# Read outside polygenix/config.py: the instance folder by the app factory, the rest by
# gunicorn's settings (polygenix/serving.py).
SERVING = ROOT / "polygenix" / "serving.py"
ELSEWHERE = {
    "POLYGENIX_INSTANCE_PATH": ROOT / "polygenix" / "__init__.py",
    "WEB_CONCURRENCY": SERVING,
    "GUNICORN_THREADS": SERVING,
    "POLYGENIX_BIND": SERVING,
    "PROMETHEUS_MULTIPROC_DIR": SERVING,
}
PROVIDER_SUFFIXES = ("API_KEY", "BASE_URL", "DEFAULT_MODEL", "MODELS")


def read_by_config() -> set[str]:
    source = (ROOT / "polygenix" / "config.py").read_text()
    names = set(
        re.findall(r'_(?:str|int|float|bool|choice|url|list)\(\s*env,\s*"([A-Z_]+)"', source)
    )
    names |= set(re.findall(r'env\.get\("([A-Z_]+)"', source))
    return names - {f"{provider_prefix(n)}_{s}" for n in PROVIDER_NAMES for s in PROVIDER_SUFFIXES}


def documented() -> dict[str, str]:
    """Variable -> its default column, from every settings table (not the provider list)."""
    rows = re.findall(r"^\| `([A-Z_<>]+)` \| (.+?) \| .+ \|$", DOC, re.M)
    return dict(rows)


def test_every_setting_read_is_documented_and_in_the_example():
    read = read_by_config() | set(ELSEWHERE)
    for name, path in ELSEWHERE.items():
        assert name in path.read_text(), f"{name} is no longer read by {path.name}"
    assert len(read) > 40
    docs = documented()
    for name in read:
        assert name in docs, f"{name} is not in docs/configuration.md"
        assert re.search(rf"^#? ?{name}=", EXAMPLE, re.M), f"{name} is not in .env.example"
    per_provider = {f"<NAME>_{s}" for s in (*PROVIDER_SUFFIXES, "EMBEDDING_MODEL")}
    stray = set(docs) - read - per_provider
    assert not stray, f"documented but never read: {stray}"


def test_every_provider_setting_is_in_the_example():
    for name in PROVIDER_NAMES:
        prefix = provider_prefix(name)
        assert f"`{prefix}`" in DOC
        assert re.search(rf"^# ?{prefix}_(API_KEY|BASE_URL)=", EXAMPLE, re.M), prefix


def test_every_embedding_model_setting_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| .+ \| .+ \| (.+) \|$", DOC, re.M))
    assert set(rows) == set(PROVIDER_NAMES)
    for name in PROVIDER_NAMES:
        prefix = provider_prefix(name)
        default = EMBEDDINGS[name].default_model if name in EMBEDDING_PROVIDERS else None
        if default:
            assert rows[name] == f"`{default}`"
            assert f"# {prefix}_EMBEDDING_MODEL={default}\n" in EXAMPLE
        else:
            assert rows[name].startswith("–"), name
        if name in EMBEDDING_PROVIDERS:
            assert re.search(rf"^# {prefix}_EMBEDDING_MODEL=", EXAMPLE, re.M), prefix
            assert (
                load_config({f"{prefix}_EMBEDDING_MODEL": "m"}, "i")[f"{prefix}_EMBEDDING_MODEL"]
                == "m"
            )


def shown(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


DEFAULTS = load_config({}, "instance")
# The settings kept under their own name as a plain value (others become timedeltas, lists...).
PLAIN = sorted(
    name for name in read_by_config() if isinstance(DEFAULTS.get(name), str | int | float | bool)
)


def test_most_defaults_can_be_checked():
    assert len(PLAIN) > 30


@pytest.mark.parametrize("name", PLAIN)
def test_documented_defaults_are_the_real_ones(name):
    column = documented()[name]
    assert f"`{shown(DEFAULTS[name])}`" in column, (name, column, DEFAULTS[name])
