from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")
application = get_wsgi_application()

from faceweb.db import ensure_embedded_server  # noqa: E402 (needs the settings configured)

ensure_embedded_server()
