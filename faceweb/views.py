"""Site-wide views: the readable 400 page, and the health check for the server and compose."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found


def bad_request_message(exception: Exception | None) -> str:
    if isinstance(exception, TooManyFilesSent):
        limit = settings.FACEWEB_MAX_FILES_PER_UPLOAD
        return (
            f"That upload has more than {limit} files; the limit is {limit} per upload. "
            "Please send them in smaller batches."
        )
    if isinstance(exception, RequestDataTooBig | TooManyFieldsSent):
        return "The request is too large for the server; please send less at once."
    return "The server could not understand this request."


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's handler400: Django's bare "Bad Request (400)" told nobody what to do. The API
    answers JSON like its other errors."""
    message = bad_request_message(exception)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=400)
    return render(request, "400.html", {"message": message}, status=400)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's handler404: an address that matches no route. The API answers JSON."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "No such address in the API."}, status=404)
    return page_not_found(request, exception)


@never_cache
@require_GET
def health(request: HttpRequest) -> HttpResponse:
    """200 when the web process can reach its database; for load balancers and compose."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})
