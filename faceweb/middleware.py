"""Request hardening that applies to every page and API call."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

Handler = Callable[[HttpRequest], HttpResponse]


def _has_nul(value: str) -> bool:
    return "\x00" in value


class RefuseNulBytesMiddleware:
    """PostgreSQL refuses NUL characters in text, so a NUL that reaches a query is a server error.

    A cookie with one is dropped (a `sessionid` of that kind is no session at all, so the visitor
    is simply signed out); a query string with one is answered 400. Form fields and JSON bodies
    are checked by their form and serializer fields, credentials by the authentication classes.
    Goes before the session middleware.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bad_cookies = [name for name, value in request.COOKIES.items() if _has_nul(name + value)]
        for name in bad_cookies:
            del request.COOKIES[name]
        if any(_has_nul(v) for key, values in request.GET.lists() for v in [key, *values]):
            message = "The address contains a NUL character."
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": message}, status=400)
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    """Sends `settings.FACEWEB_CONTENT_SECURITY_POLICY` unless a view set its own policy.

    The pages load their scripts from /static/ only (htmx and static/js/app.js; behaviour is
    declared with data attributes, never inline handlers).
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.FACEWEB_CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
