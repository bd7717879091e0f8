"""Coppertone settings: the one place that reads the environment.

A fresh machine needs nothing beside Python: SQLite in DATA_DIR, the in-memory
channel layer, the local-memory cache and the embedded model. Production is
switched on by the environment (DATABASE_URL, REDIS_URL, DEBUG=off, and the
secrets); `coppertone.checks` explains any missing piece.
"""

from __future__ import annotations

import os
import secrets
import sys
from base64 import urlsafe_b64encode
from pathlib import Path

import environ
from corsheaders.defaults import default_headers

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=True)
DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data")))


def _secret_file(name: str, make: str) -> str:
    """Read a development secret from DATA_DIR, creating it (mode 0600) on first run."""
    path = DATA_DIR / name
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(make)
        print(f"coppertone: generated {name} in {path} (development only)", file=sys.stderr)
    return path.read_text().strip()


# Development generates its own secrets; production must be given them
# (checked in coppertone/checks.py, never generated when DEBUG is off).
SECRET_KEY: str = env.str("SECRET_KEY", default="") or (
    _secret_file("secret_key", secrets.token_urlsafe(50)) if DEBUG else ""
)
# Django refuses to start on an empty SECRET_KEY with a bare traceback; an unguessable
# placeholder lets the system check (coppertone.E001) explain the fix instead.
SECRET_KEY_MISSING = not SECRET_KEY
SECRET_KEY = SECRET_KEY or "unset-" + secrets.token_urlsafe(50)
LLM_ENCRYPTION_KEYS: list[str] = env.list("LLM_ENCRYPTION_KEYS", default=[]) or (
    [_secret_file("encryption_key", urlsafe_b64encode(secrets.token_bytes(32)).decode())]
    if DEBUG
    else []
)

ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "django_htmx",
    "template_partials",
    "accounts",
    "llm",
    "coppertone",
]

MIDDLEWARE = [
    # First, so that a preflight is answered before anything can redirect or refuse it.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "llm.logs.record_user_middleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "coppertone.urls"
ASGI_APPLICATION = "coppertone.asgi.application"
WSGI_APPLICATION = "coppertone.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the widget's reads run while a reply is being written; with WAL,
    # synchronous=NORMAL is still crash-safe and saves an fsync per commit.
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

REDIS_URL: str = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="coppertone"),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "coppertone"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Open sign-up only where someone chose it: on in development, off in production.
SIGNUP_OPEN: bool = env.bool("SIGNUP_OPEN", default=DEBUG)
# Sign-in and sign-up POSTs per client address and per account name (accounts/throttle.py).
AUTH_RATE_LIMIT_PER_IP: str = env.str("AUTH_RATE_LIMIT_PER_IP", default="20/m")
AUTH_RATE_LIMIT_PER_ACCOUNT: str = env.str("AUTH_RATE_LIMIT_PER_ACCOUNT", default="10/h")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Uploaded attachments, through the default storage (any Django storage backend works).
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Security headers on every page (llm/api/asgi.py sends the same ones on /v1/, which
# skips the middleware). Nothing inline: templates load every script and style as a file.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        # htmx's requests and the widget's WebSocket ('self' covers ws:/wss: of this host).
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# No script reads either cookie: htmx gets the CSRF token from the page (hx-headers).
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# Behind a TLS-terminating proxy in production.
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Health checks and Prometheus scrape the workers directly, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    if env.bool("SECURE_PROXY_SSL_HEADER", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# "plain" lines for people, or "json": one JSON object a line, each with its request id
# (llm/logs.py), plus one line per HTTP request (which the server logs itself otherwise).
LOG_FORMAT: str = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "llm.logs.JsonFormatter"},
    },
    # Every handler redacts key shapes, whatever a message, its fields or a traceback holds.
    "filters": {
        "request_id": {"()": "llm.logs.RequestIdFilter"},
        "redact": {"()": "llm.redaction.RedactSecrets"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "coppertone.access": {"level": "INFO" if LOG_FORMAT == "json" else "WARNING"},
    },
}

# --- operations ----------------------------------------------------------------

# Prometheus metrics (llm/metrics.py): each process writes its values to files here and
# GET /metrics adds every process's up. Keep it on the machine's own disk (a tmpfs is
# best), one per machine or container: the files are named by process id.
PROMETHEUS_MULTIPROC_DIR = Path(
    env.str("PROMETHEUS_MULTIPROC_DIR", default=str(DATA_DIR / "prometheus"))
)
# prometheus-client reads the directory from the environment only; the workers a server
# starts inherit it from there too.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
# Who may read /metrics: a direct request (not through a proxy) from these networks, or
# anyone sending "Authorization: Bearer <METRICS_TOKEN>". Anyone else gets a 404.
METRICS_ALLOWED_NETWORKS: list[str] = env.list(
    "METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1"]
)
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
# Cross-origin requests (django-cors-headers), for /api/v1/ and /v1/ only and from these
# origins only (none by default): bearer tokens, no cookies, never the pages.
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(?:api/)?v1/"
CORS_ALLOW_HEADERS = (*default_headers, "last-event-id", "x-request-id")
CORS_EXPOSE_HEADERS = ["Retry-After", "X-Request-ID"]

# --- LLM hub -----------------------------------------------------------------

# The private and loopback addresses a user's base URL may reach (Ollama on 127.0.0.1),
# each an address or a network with an optional port: "127.0.0.1:11434,10.1.0.0/16".
# Development allows loopback; production allows none unless the operator lists them.
LLM_PRIVATE_HOSTS: list[str] = env.list(
    "LLM_PRIVATE_HOSTS", default=["127.0.0.0/8", "::1"] if DEBUG else []
)
# The switch it replaced, read only so that a system check can say it no longer works.
LLM_ALLOW_PRIVATE_HOSTS_LEFT: str = env.str("LLM_ALLOW_PRIVATE_HOSTS", default="")
LLM_CONNECT_TIMEOUT: float = env.float("LLM_CONNECT_TIMEOUT", default=10.0)
LLM_FIRST_BYTE_TIMEOUT: float = env.float("LLM_FIRST_BYTE_TIMEOUT", default=60.0)
LLM_IDLE_TIMEOUT: float = env.float("LLM_IDLE_TIMEOUT", default=60.0)
LLM_MAX_RETRIES: int = env.int("LLM_MAX_RETRIES", default=2)
LLM_MAX_RETRY_WAIT: float = env.float("LLM_MAX_RETRY_WAIT", default=10.0)
# A reply ends at this many seconds however its bytes trickle in (each within the idle
# timeout), and at the caps below: what a provider may send before it is cut off.
LLM_TURN_DEADLINE_SECONDS: float = env.float("LLM_TURN_DEADLINE_SECONDS", default=600.0)
LLM_MAX_SSE_LINE_BYTES: int = env.int("LLM_MAX_SSE_LINE_BYTES", default=1024 * 1024)
LLM_MAX_EVENT_BYTES: int = env.int("LLM_MAX_EVENT_BYTES", default=1024 * 1024)
LLM_MAX_REPLY_CHARS: int = env.int("LLM_MAX_REPLY_CHARS", default=1_000_000)
# A non-streamed answer (a model list): refused, not read whole, when larger.
LLM_MAX_BODY_BYTES: int = env.int("LLM_MAX_BODY_BYTES", default=4 * 1024 * 1024)
# Replies one person may have streaming at once, across every transport; 0 = no cap.
LLM_MAX_CONCURRENT_REPLIES: int = env.int("LLM_MAX_CONCURRENT_REPLIES", default=3)
# On PostgreSQL, the common turn's database steps run on an async pool (llm/pg_trips.py).
LLM_ASYNC_DATABASE: bool = env.bool("LLM_ASYNC_DATABASE", default=True)
LLM_HISTORY_TOKENS: int = env.int("LLM_HISTORY_TOKENS", default=8000)
LLM_MAX_MESSAGE_CHARS: int = env.int("LLM_MAX_MESSAGE_CHARS", default=32000)
# A whole conversation a caller sends at once (/v1's messages): system, history and text.
LLM_MAX_CONVERSATION_CHARS: int = env.int("LLM_MAX_CONVERSATION_CHARS", default=400_000)
# Attachments (llm/attachments.py): bytes a file may have, files one message may carry,
# and the characters their extracted text may add up to in one message.
LLM_MAX_FILE_BYTES: int = env.int("LLM_MAX_FILE_BYTES", default=10_000_000)
LLM_MAX_FILES_PER_MESSAGE: int = env.int("LLM_MAX_FILES_PER_MESSAGE", default=5)
LLM_MAX_ATTACHMENT_CHARS: int = env.int("LLM_MAX_ATTACHMENT_CHARS", default=100_000)
# Per user, for chat turns on every transport: "N/s", "N/m", "N/h" or "N/d".
LLM_RATE_LIMIT: str = env.str("LLM_RATE_LIMIT", default="30/m")
# Monthly spend per user in USD when the user has no budget of their own; empty = none.
LLM_DEFAULT_MONTHLY_BUDGET: str = env.str("LLM_DEFAULT_MONTHLY_BUDGET", default="")
# A reply nobody has followed for this many seconds is stopped; unset: run to the end.
LLM_UNWATCHED_REPLY_SECONDS: float | None = env.float("LLM_UNWATCHED_REPLY_SECONDS", default=None)
# On shutdown (SIGTERM), how long running replies may take to end before they are stopped.
LLM_SHUTDOWN_GRACE_SECONDS: float = env.float("LLM_SHUTDOWN_GRACE_SECONDS", default=10.0)
# Circuit breakers (llm/breakers.py): consecutive failures that open one, and how long
# it stays open before one turn probes it (longer when the provider sends Retry-After).
LLM_BREAKER_FAILURES: int = env.int("LLM_BREAKER_FAILURES", default=3)
LLM_BREAKER_COOLDOWN_SECONDS: float = env.float("LLM_BREAKER_COOLDOWN_SECONDS", default=30.0)
# How long a reply stays in a person's opt-in reply cache (llm/reply_cache.py).
LLM_REPLY_CACHE_SECONDS: int = env.int("LLM_REPLY_CACHE_SECONDS", default=86400)
LOCAL_MODEL_PATH: str = env.str("LOCAL_MODEL_PATH", default="")
LOCAL_MODEL_THREADS: int = env.int("LOCAL_MODEL_THREADS", default=0)
LOCAL_MODEL_CONTEXT: int = env.int("LOCAL_MODEL_CONTEXT", default=2048)
MQTT_URL: str = env.str("MQTT_URL", default="mqtt://127.0.0.1:1883")
MQTT_TOPIC_PREFIX: str = env.str("MQTT_TOPIC_PREFIX", default="coppertone")
# For mqtts:// brokers whose certificate is not signed by a system-trusted CA.
MQTT_CA_FILE: str = env.str("MQTT_CA_FILE", default="")
# Requests the bridge answers at once, and of those at most this many for one user.
MQTT_MAX_CONCURRENT: int = env.int("MQTT_MAX_CONCURRENT", default=16)
MQTT_MAX_CONCURRENT_PER_USER: int = env.int("MQTT_MAX_CONCURRENT_PER_USER", default=4)
