"""faceweb settings, driven by environment variables; the defaults need no configuration at all."""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path

from faceweb.db import embedded_settings, parse_database_url
from faceweb.env import env_bool, env_float, env_int, env_int_list, env_list, env_str
from recognition.core.images import DEFAULT_MAX_PIXELS
from recognition.core.staged import SearchParams
from recognition.core.versions import DLIB_RESNET_VERSION

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FACEWEB_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    # A per-installation key, kept so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "gallery",
    "recognition",
]
# The offline package (evaluation, training: `manage.py evaluate`, `train_ood`, ...) is a Django app
# where it is present; the production image leaves it out.
if importlib.util.find_spec("evaluation") is not None:
    INSTALLED_APPS.append("evaluation")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "faceweb.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "faceweb.middleware.RefuseNulBytesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "gallery.middleware.HtmxMessagesMiddleware",
]

ROOT_URLCONF = "faceweb.urls"
WSGI_APPLICATION = "faceweb.wsgi.application"

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

# Connections are kept for a minute and checked before reuse. Under gunicorn's sync workers that
# is one connection per worker process, whatever the load (runserver's thread per connection
# each kept one, until PostgreSQL refused new clients).
DB_CONN_MAX_AGE = env_int("FACEWEB_DB_CONN_MAX_AGE", 60, minimum=0)
DATABASE_URL = env_str("DATABASE_URL")
# The embedded server (faceweb/db.py) is started by the entry points (manage.py, wsgi, the Celery
# worker and beat, the tests), never by importing these settings.
FACEWEB_EMBEDDED_PGDATA = "" if DATABASE_URL else str(VAR_DIR / "pgdata")
DATABASES = {
    "default": parse_database_url(DATABASE_URL, conn_max_age=DB_CONN_MAX_AGE)
    if DATABASE_URL
    else embedded_settings(Path(FACEWEB_EMBEDDED_PGDATA), conn_max_age=DB_CONN_MAX_AGE)
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "gallery:gallery-list"
LOGOUT_REDIRECT_URL = "login"
# Anyone may create an account at /accounts/register/ (off: staff invite people instead).
FACEWEB_SELF_REGISTRATION = env_bool("FACEWEB_SELF_REGISTRATION", False)
# Failed sign-ins before a name or an address must wait FACEWEB_LOGIN_LOCKOUT_SECONDS.
FACEWEB_LOGIN_FAILURES = env_int("FACEWEB_LOGIN_FAILURES", 10, minimum=1)
FACEWEB_LOGIN_LOCKOUT_SECONDS = env_int("FACEWEB_LOGIN_LOCKOUT_SECONDS", 15 * 60, minimum=1)

# Mail (password reset, invitations): SMTP when EMAIL_HOST is set, otherwise each message is
# written as a file to var/mail, where the administrator can read it.
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "faceweb@localhost")

# Caches: the sign-in throttle must be shared by every web process, so it lives in PostgreSQL
# (a table made by a migration) unless FACEWEB_CACHE_URL names a Redis server.
FACEWEB_CACHE_URL = env_str("FACEWEB_CACHE_URL")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache"
        if FACEWEB_CACHE_URL
        else "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": FACEWEB_CACHE_URL or "faceweb_cache",
        "TIMEOUT": FACEWEB_LOGIN_LOCKOUT_SECONDS,
    },
}

# Security headers and cookies. Plain HTTP on localhost works as is; behind an HTTPS proxy set
# FACEWEB_HTTPS=1 (secure cookies, HSTS, redirect to https) and FACEWEB_PROXY_SSL_HEADER=1 when
# the proxy sets X-Forwarded-Proto (only then: a client could otherwise claim https itself).
FACEWEB_HTTPS = env_bool("FACEWEB_HTTPS", False)
if env_bool("FACEWEB_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = FACEWEB_HTTPS
SECURE_SSL_REDIRECT = FACEWEB_HTTPS and env_bool("FACEWEB_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("FACEWEB_HSTS_SECONDS", 0, minimum=0) if FACEWEB_HTTPS else 0
SESSION_COOKIE_HTTPONLY = True
# The pages put the token in htmx's headers from the template; no script reads the cookie.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Scripts only from /static/ (htmx and static/js/app.js; no inline scripts or handlers). Inline
# style attributes stay allowed: face boxes and progress bars are placed with them.
FACEWEB_CONTENT_SECURITY_POLICY = env_str(
    "FACEWEB_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every request until collectstatic runs

# Media is never served as public static files: every file goes through an access check
# (gallery.views.media). FACEWEB_MEDIA_ACCEL_PREFIX hands the bytes to nginx (X-Accel-Redirect).
MEDIA_ROOT = Path(env_str("FACEWEB_MEDIA_ROOT", str(VAR_DIR / "media"))).resolve()
MEDIA_URL = "/media/"
FACEWEB_MEDIA_ACCEL_PREFIX = env_str("FACEWEB_MEDIA_ACCEL_PREFIX")

# Uploads
FACEWEB_MAX_UPLOAD_BYTES = env_int("FACEWEB_MAX_UPLOAD_BYTES", 30 * 1024 * 1024, minimum=1)
FACEWEB_MAX_IMAGE_PIXELS = env_int("FACEWEB_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS, minimum=1)
FACEWEB_MAX_FILES_PER_UPLOAD = env_int("FACEWEB_MAX_FILES_PER_UPLOAD", 500, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = FACEWEB_MAX_FILES_PER_UPLOAD
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Downloads: a zip of selected photos streams their originals; this bounds one request's bytes.
FACEWEB_MAX_ZIP_BYTES = env_int("FACEWEB_MAX_ZIP_BYTES", 2 * 1024**3, minimum=1)
FACEWEB_THUMBNAIL_SIDE = env_int("FACEWEB_THUMBNAIL_SIDE", 320, minimum=32)
FACEWEB_PREVIEW_SIDE = env_int("FACEWEB_PREVIEW_SIDE", 1600, minimum=256)
# Self-healing processing (gallery/actions/photos.py, do_heal_photos, run by Celery beat).
# A photo in `processing` longer than any run may take (the task's hard time limit) lost its
# worker; one queued that long while no worker started anything lost its message.
FACEWEB_STALE_PROCESSING_SECONDS = env_int(
    "FACEWEB_STALE_PROCESSING_SECONDS",
    env_int("CELERY_TASK_TIME_LIMIT", 360, minimum=1) + 60,
    minimum=1,
)
FACEWEB_STALE_QUEUED_SECONDS = env_int("FACEWEB_STALE_QUEUED_SECONDS", 10 * 60, minimum=1)
FACEWEB_HEAL_EVERY_SECONDS = env_int("FACEWEB_HEAL_EVERY_SECONDS", 60, minimum=1)
# Processing starts per photo before it fails for good (a photo that kills its worker).
FACEWEB_MAX_PROCESSING_ATTEMPTS = env_int("FACEWEB_MAX_PROCESSING_ATTEMPTS", 3, minimum=1)
# How long a task that lost the database waits for it before giving the photo back.
FACEWEB_DATABASE_WAIT_SECONDS = env_int("FACEWEB_DATABASE_WAIT_SECONDS", 240, minimum=0)

# Recognition
FACEWEB_EMBEDDER = env_str("FACEWEB_EMBEDDER", DLIB_RESNET_VERSION)
# Where `manage.py install_model` copies the InsightFace packs an operator supplies.
FACEWEB_MODELS_DIR = Path(env_str("FACEWEB_MODELS_DIR", str(VAR_DIR / "models"))).resolve()
# Photos a re-embed task handles before it hands over to the next message (resumable job).
FACEWEB_REEMBED_BATCH = env_int("FACEWEB_REEMBED_BATCH", 50, minimum=1)
FACEWEB_DEVICE = env_str("FACEWEB_DEVICE", "")  # "" = GPU when present, else CPU
# torch and onnxruntime (detector) threads per worker process; 0 = every core. With several
# worker processes on few cores, use cores / processes: oversubscribed torch threads made
# embedding 5-10x slower (BENCHMARKS.md).
FACEWEB_TORCH_THREADS = env_int("FACEWEB_TORCH_THREADS", 0, minimum=0)
# centerface (default), hog, or cnn (dlib's MMOD: a GPU only); recognition/core/detection.py
FACEWEB_DETECTOR = env_str("FACEWEB_DETECTOR", "centerface")
if FACEWEB_DETECTOR not in ("centerface", "hog", "cnn"):
    raise ValueError(f"FACEWEB_DETECTOR must be centerface, hog or cnn, not {FACEWEB_DETECTOR!r}")
FACEWEB_DETECT_UPSAMPLE = env_int("FACEWEB_DETECT_UPSAMPLE", 1, minimum=0)
FACEWEB_DETECT_MAX_SIDE = env_int("FACEWEB_DETECT_MAX_SIDE", 1600, minimum=64)
FACEWEB_MIN_FACE_PX = env_int("FACEWEB_MIN_FACE_PX", 40, minimum=1)
# Open-set targets (recognition/core/calibration.py): the expected share of strangers' faces
# (people not in the library) tagged automatically, and given a suggestion. The matcher sizes its
# limits to the number of people the searcher can see so that these hold at any library size.
FACEWEB_AUTO_TAG_STRANGER_RATE = env_float("FACEWEB_AUTO_TAG_STRANGER_RATE", 0.005)
FACEWEB_SUGGEST_STRANGER_RATE = env_float("FACEWEB_SUGGEST_STRANGER_RATE", 0.05)
for _name in ("FACEWEB_AUTO_TAG_STRANGER_RATE", "FACEWEB_SUGGEST_STRANGER_RATE"):
    if not 0.0 < globals()[_name] < 1.0:
        raise ValueError(f"{_name} must be between 0 and 1 (a share of faces)")
if FACEWEB_AUTO_TAG_STRANGER_RATE > FACEWEB_SUGGEST_STRANGER_RATE:
    raise ValueError("FACEWEB_AUTO_TAG_STRANGER_RATE must not exceed FACEWEB_SUGGEST_STRANGER_RATE")
# Photos a worker task processes together: the next ones are decoded and detected while the
# current ones are embedded (one forward pass per batch) and stored (BENCHMARKS.md, "embedding").
FACEWEB_WORKER_BATCH = env_int("FACEWEB_WORKER_BATCH", 4, minimum=1)
# Staged prefix search (recognition/index/search.py; measurements in BENCHMARKS.md, "search").
# Level 1 is served by an HNSW index on subvector(vector, 1, d_1): another d_1 (or HALFVEC) needs
# its own index, which `manage.py refit_basis --ensure-index` creates.
_SEARCH = SearchParams()  # the defaults live with the search itself
FACEWEB_SEARCH_LEVELS = env_int_list("FACEWEB_SEARCH_LEVELS", list(_SEARCH.levels))
FACEWEB_SEARCH_DELTA = env_float("FACEWEB_SEARCH_DELTA", _SEARCH.delta)
FACEWEB_SEARCH_SHORTLIST = env_int("FACEWEB_SEARCH_SHORTLIST", _SEARCH.shortlist, minimum=1)
FACEWEB_SEARCH_EF_SEARCH = env_int("FACEWEB_SEARCH_EF_SEARCH", _SEARCH.ef_search, minimum=1)
FACEWEB_SEARCH_MODE = env_str("FACEWEB_SEARCH_MODE", _SEARCH.mode)  # or "variable"
FACEWEB_SEARCH_HALFVEC = env_bool("FACEWEB_SEARCH_HALFVEC", _SEARCH.half)
# A gallery filter letting through at most this many templates is searched exactly.
FACEWEB_SEARCH_EXACT_MAX_ROWS = env_int(
    "FACEWEB_SEARCH_EXACT_MAX_ROWS", _SEARCH.exact_max_rows, minimum=0
)


# Celery: CELERY_BROKER_URL when set (Redis or RabbitMQ). Without one, the queue lives in the
# app's own PostgreSQL database (faceweb/broker.py): nothing else to run, and a fetched message
# stays until its task is acknowledged.
def _database_broker_url(db: dict) -> str:
    from urllib.parse import quote

    auth = quote(db["USER"], safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"]
    query = dict(db.get("OPTIONS") or {})
    if host.startswith("/"):
        query["host"], host = host, ""
    netloc = f"{auth}@{host}" + (f":{db['PORT']}" if db["PORT"] else "")
    params = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in query.items())
    return f"faceweb+postgresql+psycopg://{netloc}/{quote(db['NAME'])}" + (
        f"?{params}" if params else ""
    )


CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or _database_broker_url(DATABASES["default"])
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    # A fetched message comes back to the queue this long after its worker died. Longer than
    # the hard time limit, so a running task is never handed out twice.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 15 * 60, minimum=60),
}
if CELERY_BROKER_URL.startswith("faceweb+"):
    CELERY_BROKER_TRANSPORT_OPTIONS.update(pool_pre_ping=True, pool_size=2, max_overflow=2)
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = 1.0
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "faceweb")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
# A task whose pool process died goes back to the queue; do_claim_photo's attempt count keeps
# a photo that kills its worker from going round forever.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360, minimum=1)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker outlives any database or broker outage
CELERY_BEAT_SCHEDULE = {
    "heal-photos": {
        "task": "recognition.tasks.heal_photos",
        "schedule": float(FACEWEB_HEAL_EVERY_SECONDS),
        "options": {"expires": float(FACEWEB_HEAL_EVERY_SECONDS)},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# HTTP Basic with the login password, for old scripts only: API keys are the documented way.
FACEWEB_API_BASIC_AUTH = env_bool("FACEWEB_API_BASIC_AUTH", False)
REST_FRAMEWORK = {
    # API keys first: their challenge makes a missing or wrong key a 401 (WWW-Authenticate:
    # Bearer) instead of a 403, which is what API clients expect; browser sessions work too.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "gallery.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        *(["gallery.auth.SafeBasicAuthentication"] if FACEWEB_API_BASIC_AUTH else []),
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "gallery.auth.ApiKeyScope",
    ],
    # OPTIONS describes methods and formats, not serializer fields: building those called
    # get_object() on views that fetch through access helpers (a server error).
    "DEFAULT_METADATA_CLASS": "gallery.auth.ApiMetadata",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "faceweb API",
    "DESCRIPTION": "Photo galleries, the faces in them and the people they belong to.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI is served from the sidecar package: the docs work with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two search fields share these choices; one name keeps the schema free of warnings.
    "ENUM_NAME_OVERRIDES": {"VerdictEnum": ["same", "possible", "unknown"]},
    # Request and response components apart: an upload's file fields are `binary` (Swagger
    # shows a file picker), the URLs in responses are strings.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "gallery.schema.add_error_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("FACEWEB_LOG_LEVEL", "INFO")},
    "loggers": {"pgserver": {"level": "WARNING"}, "filelock": {"level": "WARNING"}},
}
