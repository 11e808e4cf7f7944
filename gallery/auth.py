"""API authentication: `Authorization: Bearer <API key>`, and the scope a key grants.

HTTP Basic with the login password is off unless FACEWEB_API_BASIC_AUTH is set (it made every
request cost a password hash, and a browser that cached Basic credentials sent them with
cross-site form posts, past CSRF). Failed attempts are counted per client address and refused
for a while once there are too many (gallery/throttle.py), before any key or password is checked.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, metadata, permissions
from rest_framework.request import Request

from gallery.actions.accounts import check_api_key
from gallery.models import ApiKey
from gallery.throttle import Throttle, client_address

KEY_FAILURES = Throttle("api-key", limit=20, window_seconds=15 * 60)
BASIC_FAILURES = Throttle("api-basic", limit=10, window_seconds=15 * 60)


class TooManyAttempts(exceptions.Throttled):
    default_detail = "Too many failed sign-in attempts from your address; try again later."


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        address = client_address(request)
        if KEY_FAILURES.blocked(address):
            raise TooManyAttempts(wait=KEY_FAILURES.window_seconds)
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the key as `Authorization: Bearer <key>`.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            token = ""
        key = check_api_key(token)
        if key is None:
            KEY_FAILURES.fail(address)
            raise exceptions.AuthenticationFailed(
                "This API key is not valid: unknown, revoked or expired."
            )
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class SafeBasicAuthentication(authentication.BasicAuthentication):
    """DRF's Basic authentication with a NUL check (PostgreSQL refuses NUL in a query: it was a
    server error) and the failure throttle. Only used when FACEWEB_API_BASIC_AUTH is on."""

    def authenticate(self, request: Request) -> tuple[User, None] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"basic":
            return None
        address = client_address(request)
        if BASIC_FAILURES.blocked(address):
            raise TooManyAttempts(wait=BASIC_FAILURES.window_seconds)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            BASIC_FAILURES.fail(address)
            raise

    def authenticate_credentials(
        self, userid: str, password: str, request: Any = None
    ) -> tuple[User, None]:
        if "\x00" in userid or "\x00" in password:
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        return super().authenticate_credentials(userid, password, request)


class ApiKeyScope(permissions.BasePermission):
    """A read-only key may read (and search by face, which stores nothing), never change."""

    message = "This API key is read-only."
    READ_ONLY_POSTS = frozenset({"api-face-search"})

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey) or not key.read_only:
            return True
        if request.method in permissions.SAFE_METHODS:
            return True
        match = request.resolver_match
        return match is not None and match.url_name in self.READ_ONLY_POSTS


class ApiMetadata(metadata.SimpleMetadata):
    """OPTIONS: name, description, formats; no per-field `actions` (see settings.py)."""

    def determine_metadata(self, request: Request, view: Any) -> dict[str, Any]:
        data = super().determine_metadata(request, view)
        data.pop("actions", None)
        return data

    def determine_actions(self, request: Request, view: Any) -> dict[str, Any]:
        return {}


class ApiKeySchema(OpenApiAuthenticationExtension):
    """The key in the OpenAPI schema (Swagger's "Authorize" button takes it)."""

    target_class = "gallery.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key made on your account page: `Authorization: Bearer fw_...`.",
        }
