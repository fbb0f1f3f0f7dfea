"""PolyGenix settings: every one read from the environment, with a typed default.

Each setting is listed with a comment in `.env.example` and in docs/configuration.md. The checkout's
top-level config.py re-exports this module.
`load_config()` turns an environment into the Flask config mapping the app factory applies.
"""

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Providers whose <PREFIX>_API_KEY, _BASE_URL, _DEFAULT_MODEL and _MODELS are read (see
# polygenix/providers: the registry must name exactly these).
PROVIDER_NAMES = (
    "groq",
    "openai",
    "deepseek",
    "mistral",
    "openrouter",
    "anthropic",
    "gemini",
    "ollama",
    "openai-compatible",
)
# Providers with an embeddings API, whose <PREFIX>_EMBEDDING_MODEL is read too (see
# polygenix/providers/embedder.py: its EMBEDDINGS must name exactly these).
EMBEDDING_PROVIDERS = ("openai", "mistral", "gemini", "ollama", "openai-compatible")
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer clearly and concisely."

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting in the environment has a value PolyGenix cannot use."""


def _str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _str(env, name, default)
    if value not in allowed and value.upper() not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value if value in allowed else value.upper()


def _url(env: Mapping[str, str], name: str) -> str | None:
    url = _str(env, name)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name} must start with http:// or https:// and a host, got {url!r}")
    return url


def _list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in (env.get(name) or "").split(",") if item.strip()]


def _aliases(env: Mapping[str, str]) -> dict[str, str]:
    """MODEL_ALIASES: comma-separated `alias=provider/model` pairs; aliases ignore case."""
    aliases = {}
    for item in _list(env, "MODEL_ALIASES"):
        alias, sep, target = item.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise ConfigError(
                f"MODEL_ALIASES entries must look like alias=provider/model, got {item!r}"
            )
        aliases[" ".join(alias.split()).lower()] = target.strip()
    return aliases


def provider_prefix(name: str) -> str:
    """`openai-compatible` -> `OPENAI_COMPATIBLE`: the start of a provider's variable names."""
    return name.upper().replace("-", "_")


def _provider_settings(env: Mapping[str, str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name in PROVIDER_NAMES:
        prefix = provider_prefix(name)
        for suffix in ("API_KEY", "DEFAULT_MODEL"):
            settings[f"{prefix}_{suffix}"] = _str(env, f"{prefix}_{suffix}")
        settings[f"{prefix}_BASE_URL"] = _url(env, f"{prefix}_BASE_URL")
        settings[f"{prefix}_MODELS"] = _list(env, f"{prefix}_MODELS")
        if name in EMBEDDING_PROVIDERS:
            settings[f"{prefix}_EMBEDDING_MODEL"] = _str(env, f"{prefix}_EMBEDDING_MODEL")
    return settings


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def database_url(url: str) -> str:
    """Accept the common `postgres://` and `postgresql://` forms, using psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def load_config(env: Mapping[str, str], instance_path: str) -> dict[str, Any]:
    """Read every PolyGenix setting from `env`; defaults suit a single-user development machine."""
    environment = (_str(env, "POLYGENIX_ENV", "development") or "").lower()
    if environment not in {"development", "production"}:
        raise ConfigError(f"POLYGENIX_ENV must be development or production, got {environment!r}")
    algorithm = _str(env, "JWT_ALGORITHM", "HS256")
    if algorithm not in {"HS256", "HS384", "HS512"}:
        raise ConfigError(f"JWT_ALGORITHM must be HS256, HS384 or HS512, got {algorithm!r}")
    default_db = "sqlite:///" + str(Path(instance_path) / "polygenix.db")
    return {
        "POLYGENIX_ENV": environment,
        # None means: generate once and keep in the instance folder (development only).
        "SECRET_KEY": _str(env, "SECRET_KEY"),
        "JWT_SECRET_KEY": _str(env, "JWT_SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": database_url(_str(env, "DATABASE_URL", default_db)),
        # Connection pool (PostgreSQL): per worker process, pre-pinged so a restarted database
        # costs failed requests while it is down, never a worker restart.
        "DB_POOL_SIZE": _int(env, "DB_POOL_SIZE", 5, minimum=1),
        "DB_MAX_OVERFLOW": _int(env, "DB_MAX_OVERFLOW", 10),
        "DB_POOL_RECYCLE": _int(env, "DB_POOL_RECYCLE", 1800, minimum=1),
        # Seconds a request waits for a free pooled connection before a 503.
        "DB_POOL_TIMEOUT": _float(env, "DB_POOL_TIMEOUT", 10.0, minimum=0.1),
        # PostgreSQL: seconds to connect; longest statement; longest a transaction may sit
        # idle. A server that does not answer at all is given up on after the first two.
        "DB_CONNECT_TIMEOUT": _float(env, "DB_CONNECT_TIMEOUT", 5.0, minimum=1),
        "DB_STATEMENT_TIMEOUT": _float(env, "DB_STATEMENT_TIMEOUT", 30.0, minimum=0.1),
        "DB_IDLE_TIMEOUT": _float(env, "DB_IDLE_TIMEOUT", 60.0, minimum=1),
        "REDIS_URL": _str(env, "REDIS_URL"),
        "REDIS_KEY_PREFIX": _str(env, "REDIS_KEY_PREFIX", "polygenix:"),
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        "LOGIN_RATE_LIMIT": _str(env, "LOGIN_RATE_LIMIT", "10/minute"),
        "CHAT_RATE_LIMIT": _str(env, "CHAT_RATE_LIMIT", "30/minute"),
        "JWT_TOKEN_LOCATION": ["headers"],
        # CSRF protection is for tokens in cookies; a bearer header needs none, so tokens carry
        # no `csrf` claim (it was a random 36 characters in every token). The web page's refresh
        # cookie is guarded by its own header and Origin check instead (polygenix/auth/cookie.py).
        "JWT_COOKIE_CSRF_PROTECT": False,
        "JWT_REFRESH_COOKIE_NAME": "polygenix_refresh",
        "JWT_ALGORITHM": algorithm,
        "JWT_DECODE_ALGORITHMS": [algorithm],
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(
            minutes=_int(env, "ACCESS_TOKEN_EXPIRE_MINUTES", 30, minimum=1)
        ),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(
            days=_int(env, "REFRESH_TOKEN_EXPIRE_DAYS", 30, minimum=1)
        ),
        # A spent refresh token presented again this soon gets a new pair (two tabs, a retry)
        # instead of revoking its login.
        "REFRESH_REUSE_GRACE_SECONDS": _int(env, "REFRESH_REUSE_GRACE_SECONDS", 10),
        # Minutes after a password login (login or register) during which its access token may
        # change the account's password without `current_password`; 0: never.
        "PASSWORD_CHANGE_FRESH_MINUTES": _int(env, "PASSWORD_CHANGE_FRESH_MINUTES", 10),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1024),
        "MAX_MESSAGE_CHARS": _int(env, "MAX_MESSAGE_CHARS", 32_000, minimum=1),
        "PASSWORD_MIN_LENGTH": _int(env, "PASSWORD_MIN_LENGTH", 8, minimum=1),
        # Live personal API keys a user may have at once.
        "API_KEYS_PER_USER": _int(env, "API_KEYS_PER_USER", 20, minimum=1),
        # OWASP's scrypt strength: N=2^17, r=8, p=1 (128 MiB and ~0.3 s per hash).
        "PASSWORD_HASH_METHOD": _str(env, "PASSWORD_HASH_METHOD", "scrypt:131072:8:1"),
        # Password hashes computed at once per worker process; more wait their turn.
        "PASSWORD_HASH_CONCURRENCY": _int(env, "PASSWORD_HASH_CONCURRENCY", 2, minimum=1),
        # How long a request waits for its turn to hash before a 503.
        "PASSWORD_HASH_TIMEOUT": _float(env, "PASSWORD_HASH_TIMEOUT", 10.0, minimum=0.01),
        "CONTEXT_MAX_MESSAGES": _int(env, "CONTEXT_MAX_MESSAGES", 50, minimum=0),
        "CONTEXT_MAX_CHARS": _int(env, "CONTEXT_MAX_CHARS", 24_000, minimum=0),
        # The most messages one /v1 chat completion may carry (a 400 beyond): a long
        # conversation of 250 turns, stored in one statement when it starts a session.
        "V1_MAX_MESSAGES": _int(env, "V1_MAX_MESSAGES", 500, minimum=1),
        # The largest /v1/chat/completions body (its images come inline, in base64): at least
        # MAX_CONTENT_LENGTH.
        "V1_MAX_BODY_BYTES": _int(env, "V1_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024),
        # Images attached to messages (polygenix/attachments): the largest file; the most
        # pixels (a decompression bomb is refused before it is decoded); a user's total; the
        # most a message may carry; hours before one no message uses is deleted; and how many
        # of the earlier messages' images a turn sends again (the newest).
        "ATTACHMENT_MAX_BYTES": _int(env, "ATTACHMENT_MAX_BYTES", 5 * 1024 * 1024, minimum=1),
        "ATTACHMENT_MAX_PIXELS": _int(env, "ATTACHMENT_MAX_PIXELS", 25_000_000, minimum=1),
        "ATTACHMENT_QUOTA_BYTES": _int(env, "ATTACHMENT_QUOTA_BYTES", 100 * 1024 * 1024),
        "ATTACHMENTS_PER_MESSAGE": _int(env, "ATTACHMENTS_PER_MESSAGE", 10, minimum=0),
        "ATTACHMENT_ORPHAN_HOURS": _float(env, "ATTACHMENT_ORPHAN_HOURS", 24.0, minimum=0.001),
        "ATTACHMENT_CONTEXT_IMAGES": _int(env, "ATTACHMENT_CONTEXT_IMAGES", 4),
        "SQLALCHEMY_ECHO": _bool(env, "SQLALCHEMY_ECHO", False),
        # JSON lines for log systems; plain text is easier to read in development.
        "LOG_FORMAT": _choice(
            env, "LOG_FORMAT", "json" if environment == "production" else "text", ("text", "json")
        ),
        "LOG_LEVEL": _choice(env, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        "METRICS_ENABLED": _bool(env, "METRICS_ENABLED", True),
        "METRICS_TOKEN": _str(env, "METRICS_TOKEN"),
        # Set but empty disables the system prompt.
        "SYSTEM_PROMPT": env.get("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT).strip(),
        "MODEL_ALIASES": _aliases(env),
        # The model that titles new sessions (chat/titles.py); unset: their first message is.
        "TITLE_MODEL": _str(env, "TITLE_MODEL"),
        # Governance (polygenix/governance): the models users may use, their default budgets
        # (N/day, N/week or N/month; unset: none), and prices to add to genai-prices'.
        "MODEL_ALLOWLIST": _list(env, "MODEL_ALLOWLIST") or ["*"],
        "TOKEN_BUDGET": _str(env, "TOKEN_BUDGET"),
        "COST_BUDGET": _str(env, "COST_BUDGET"),
        "MODEL_PRICES_FILE": _str(env, "MODEL_PRICES_FILE"),
        "PROVIDER_CONNECT_TIMEOUT": _float(env, "PROVIDER_CONNECT_TIMEOUT", 5.0, minimum=0.01),
        # A deadline for a whole non-streamed call, retries included: reasoning models may think
        # for minutes before their first byte (the official SDKs wait 600 s).
        "PROVIDER_TIMEOUT": _float(env, "PROVIDER_TIMEOUT", 600.0, minimum=0.01),
        # Streams: the longest silence (the first byte's included), and the longest stream.
        "STREAM_IDLE_TIMEOUT": _float(env, "STREAM_IDLE_TIMEOUT", 300.0, minimum=0.01),
        "STREAM_MAX_SECONDS": _float(env, "STREAM_MAX_SECONDS", 1800.0, minimum=0.01),
        "PROVIDER_MAX_RETRIES": _int(env, "PROVIDER_MAX_RETRIES", 2),
        "PROVIDER_MAX_RETRY_WAIT": _float(env, "PROVIDER_MAX_RETRY_WAIT", 10.0),
        "MAX_OUTPUT_TOKENS": _int(env, "MAX_OUTPUT_TOKENS", 4096, minimum=1),
        # Models that reason get more room: they think before they answer.
        "REASONING_MAX_OUTPUT_TOKENS": _int(env, "REASONING_MAX_OUTPUT_TOKENS", 32768, minimum=1),
        "REASONING_MODELS": _list(env, "REASONING_MODELS"),
        # Seconds a provider's own list of models is kept before it is asked again.
        "MODEL_LIST_TTL": _int(env, "MODEL_LIST_TTL", 600),
        "OPENROUTER_APP_NAME": _str(env, "OPENROUTER_APP_NAME", "PolyGenix"),
        "OPENROUTER_SITE_URL": _url(env, "OPENROUTER_SITE_URL"),
        "CORS_ORIGINS": _list(env, "CORS_ORIGINS"),
        "PROXY_FIX_X_FOR": _int(env, "PROXY_FIX_X_FOR", 0),
        "STREAM_KEEPALIVE_SECONDS": _float(env, "STREAM_KEEPALIVE_SECONDS", 15.0, minimum=0.01),
        # A streamed reply's text is saved at most this often while it arrives.
        "STREAM_SAVE_INTERVAL": _float(env, "STREAM_SAVE_INTERVAL", 1.0, minimum=0.01),
        # Background jobs (polygenix/jobs): run by threads of each web worker unless turned off
        # (then by `polygenix worker` processes); how many at once per process; how often the
        # database is asked for due jobs; how long a claimed job stays its worker's without a
        # renewal (a worker that died is replaced after it); attempts before a job is failed,
        # and the wait before the first retry (doubled at each one).
        "JOBS_IN_WEB_WORKERS": _bool(env, "JOBS_IN_WEB_WORKERS", True),
        "JOBS_THREADS": _int(env, "JOBS_THREADS", 2, minimum=1),
        "JOBS_POLL_SECONDS": _float(env, "JOBS_POLL_SECONDS", 1.0, minimum=0.01),
        "JOBS_LEASE_SECONDS": _float(env, "JOBS_LEASE_SECONDS", 60.0, minimum=0.1),
        "JOBS_MAX_ATTEMPTS": _int(env, "JOBS_MAX_ATTEMPTS", 5, minimum=1),
        "JOBS_RETRY_SECONDS": _float(env, "JOBS_RETRY_SECONDS", 10.0),
        **_provider_settings(env),
    }
