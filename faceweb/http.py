"""The request type the views see, for the type checker."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class AuthedRequest(HttpRequest):
    """A request that passed `login_required`: its user is an account, never anonymous; the
    django-htmx middleware adds `htmx`."""

    user: User
    htmx: HtmxDetails
