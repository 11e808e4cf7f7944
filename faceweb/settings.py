"""faceweb settings, driven by environment variables; the defaults need no configuration at all."""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path

from faceweb.db import database_settings
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
    "whitenoise.middleware.WhiteNoiseMiddleware",
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

DATABASES = {"default": database_settings(env_str("DATABASE_URL"), VAR_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "gallery:gallery-list"
LOGOUT_REDIRECT_URL = "login"

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
FACEWEB_THUMBNAIL_SIDE = env_int("FACEWEB_THUMBNAIL_SIDE", 320, minimum=32)
FACEWEB_PREVIEW_SIDE = env_int("FACEWEB_PREVIEW_SIDE", 1600, minimum=256)
# A photo left in `processing` longer than this is considered stale (its worker died).
FACEWEB_STALE_PROCESSING_SECONDS = env_int("FACEWEB_STALE_PROCESSING_SECONDS", 15 * 60, minimum=1)

# Recognition
FACEWEB_EMBEDDER = env_str("FACEWEB_EMBEDDER", DLIB_RESNET_VERSION)
FACEWEB_DEVICE = env_str("FACEWEB_DEVICE", "")  # "" = GPU when present, else CPU
# torch threads per worker process; 0 = every core. With several worker processes on few cores,
# use cores / processes: oversubscribed torch threads made embedding 5-10x slower (BENCHMARKS.md).
FACEWEB_TORCH_THREADS = env_int("FACEWEB_TORCH_THREADS", 0, minimum=0)
FACEWEB_DETECTOR = env_str("FACEWEB_DETECTOR", "hog")
FACEWEB_DETECT_UPSAMPLE = env_int("FACEWEB_DETECT_UPSAMPLE", 1, minimum=0)
FACEWEB_DETECT_MAX_SIDE = env_int("FACEWEB_DETECT_MAX_SIDE", 1600, minimum=64)
FACEWEB_MIN_FACE_PX = env_int("FACEWEB_MIN_FACE_PX", 40, minimum=1)
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

# Celery: CELERY_BROKER_URL when set (Redis or RabbitMQ). Without one, a filesystem broker under
# var/ lets `run` start a real worker on a machine with no broker server.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "faceweb")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360, minimum=1)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REST_FRAMEWORK = {
    # Basic first: its challenge makes a missing or wrong login a 401 (with WWW-Authenticate)
    # instead of a 403, which is what API clients expect; browser sessions work as before.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
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
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("FACEWEB_LOG_LEVEL", "INFO")},
    "loggers": {"pgserver": {"level": "WARNING"}, "filelock": {"level": "WARNING"}},
}
