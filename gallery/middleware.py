"""Flash messages for htmx requests, which swap a fragment instead of loading a page."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

# Headers after which htmx loads another page, which shows the messages itself.
NAVIGATING = ("HX-Redirect", "HX-Location", "HX-Refresh")


class HtmxMessagesMiddleware:
    """Appends the messages an htmx request queued to its fragment, out of band into the page's
    #messages list, so every action says what it did without a reload.

    Listed after MessageMiddleware: the messages shown here are marked used before that
    middleware would keep them for the next page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            not getattr(request, "htmx", False)
            or response.streaming
            or 300 <= response.status_code < 400
            or not response.get("Content-Type", "").startswith("text/html")
            or any(header in response for header in NAVIGATING)
        ):
            return response
        queued = get_messages(request)
        if not len(queued):
            return response
        response.content += render_to_string(
            "_messages.html", {"messages": queued, "oob": True}
        ).encode()
        return response
