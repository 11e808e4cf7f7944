"""Accounts: sign-in (throttled), password change and reset, invitations and user management for
staff, API keys, and a user's own data as a zip. Writes go through gallery/actions/accounts.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from faceweb.http import AuthedRequest
from gallery.access import access_api_key, access_user
from gallery.actions.accounts import (
    do_create_api_key,
    do_create_user,
    do_delete_user,
    do_revoke_api_key,
)
from gallery.actions.common import ActionError
from gallery.export import export_zip
from gallery.models import ApiKey, Gallery, GalleryMember
from gallery.throttle import Throttle, client_address


def _login_throttles() -> tuple[Throttle, Throttle]:
    limit = settings.FACEWEB_LOGIN_FAILURES
    window = settings.FACEWEB_LOGIN_LOCKOUT_SECONDS
    # Per name (password guessing from many addresses) and per address (many names).
    return Throttle("login-name", limit, window), Throttle("login-address", limit * 3, window)


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses before checking the password once a name or an address failed too often, so
    guessing costs the attacker time and the server no password hashing."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins; please wait {minutes} minutes and try again.",
    }

    def clean(self) -> dict[str, Any]:
        by_name, by_address = _login_throttles()
        name = (self.cleaned_data.get("username") or "").lower()
        address = client_address(self.request) if self.request else "unknown"
        if by_name.blocked(name) or by_address.blocked(address):
            minutes = max(1, settings.FACEWEB_LOGIN_LOCKOUT_SECONDS // 60)
            raise forms.ValidationError(
                self.error_messages["throttled"].format(minutes=minutes), code="throttled"
            )
        try:
            return super().clean()
        except forms.ValidationError:
            by_name.fail(name)
            by_address.fail(address)
            raise


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm


# Account page, registration -----------------------------------------------------------------


@require_GET
@login_required
def account(request: AuthedRequest) -> HttpResponse:
    return render(request, "gallery/accounts/account.html", {})


@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    """Self-registration, only when FACEWEB_SELF_REGISTRATION is on."""
    if not settings.FACEWEB_SELF_REGISTRATION:
        raise Http404("Accounts are made by an administrator here.")
    form: UserCreationForm = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            new = do_create_user(
                form.cleaned_data["username"], password=form.cleaned_data["password1"]
            )
        except ActionError as exc:
            form.add_error("username", str(exc))
        else:
            login(request, new.user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("gallery:gallery-list")
    context = {"form": form, "title": "Create an account", "submit": "Create account"}
    return render(request, "registration/form_page.html", context)


# API keys ---------------------------------------------------------------------------------


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'backup script'.")
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Expires after (days)",
        help_text="Empty: the key works until you revoke it.",
    )  # fmt: skip
    read_only = forms.BooleanField(required=False, label="Read only (cannot change anything)")


def _keys(user: User) -> list[ApiKey]:
    return list(ApiKey.objects.filter(user=user).order_by("revoked_at", "-created_at"))


@require_http_methods(["GET", "POST"])
@login_required
def api_keys(request: AuthedRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    secret = ""
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in_days"]
        try:
            new = do_create_api_key(
                request.user,
                form.cleaned_data["name"],
                read_only=form.cleaned_data["read_only"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            secret = new.secret
            form = ApiKeyForm()
    context = {"form": form, "keys": _keys(request.user), "secret": secret, "now": timezone.now()}
    status = 400 if form.errors else 200
    return render(request, "gallery/accounts/keys.html", context, status=status)


@require_POST
@login_required
def api_key_revoke(request: AuthedRequest, key_id: int) -> HttpResponse:
    key, _ = access_api_key(request.user, key_id)
    do_revoke_api_key(key)
    messages.success(request, f"The key {key.name!r} no longer works.")
    return redirect("api-keys")


# Your data --------------------------------------------------------------------------------


@require_GET
@login_required
def export(request: AuthedRequest) -> FileResponse:
    """Every photo of the user's own galleries with the names and boxes of its faces, as a zip."""
    stream = export_zip(request.user)
    name = f"faceweb-{request.user.get_username()}-{timezone.now():%Y%m%d}.zip"
    return FileResponse(stream, as_attachment=True, filename=name, content_type="application/zip")


# Users (staff) ----------------------------------------------------------------------------


class NewUserForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False, help_text="The invitation is mailed here.")
    is_staff = forms.BooleanField(required=False, label="Staff (manages users, reviews faces)")


def _staff(request: AuthedRequest) -> None:
    if not (request.user.is_authenticated and request.user.is_staff):
        raise Http404("No such page.")


@require_http_methods(["GET", "POST"])
@login_required
def users(request: AuthedRequest) -> HttpResponse:
    """Who has an account and access to what; invite someone."""
    _staff(request)
    form = NewUserForm(request.POST or None)
    invite = ""
    if request.method == "POST" and form.is_valid():
        try:
            new = do_create_user(
                form.cleaned_data["username"],
                form.cleaned_data["email"],
                is_staff=form.cleaned_data["is_staff"],
                site_url=request.build_absolute_uri("/").rstrip("/"),
            )
        except ActionError as exc:
            form.add_error("username", str(exc))
        else:
            invite = request.build_absolute_uri(new.invite_path)
            form = NewUserForm()
    people = (
        get_user_model()
        .objects.order_by("username")
        .annotate(gallery_count=Count("galleries", distinct=True))
        .prefetch_related(
            Prefetch(
                "gallery_memberships",
                queryset=GalleryMember.objects.select_related("gallery", "gallery__owner"),
            ),
            Prefetch("galleries", queryset=Gallery.objects.prefetch_related("members__user")),
        )
    )
    context = {"form": form, "people": people, "invite": invite}
    return render(
        request, "gallery/accounts/users.html", context, status=400 if form.errors else 200
    )


@require_POST
@login_required
def user_delete(request: AuthedRequest, user_id: int) -> HttpResponse:
    user, _ = access_user(request.user, user_id)
    if user.pk == request.user.pk:
        raise PermissionDenied("You cannot delete your own account here.")
    name = user.get_username()
    do_delete_user(user)
    messages.success(request, f"{name} and all their galleries, photos and people are deleted.")
    return redirect("users")


urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", account, name="account"),
    path("register/", register, name="register"),
    path(
        "password_change/",
        auth_views.PasswordChangeView.as_view(
            template_name="registration/form_page.html",
            extra_context={"title": "Change your password", "submit": "Change password"},
        ),
        name="password_change",
    ),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(
            template_name="registration/message_page.html",
            extra_context={"title": "Password changed", "text": "Your password was changed."},
        ),
        name="password_change_done",
    ),
    path(
        "password_reset/",
        auth_views.PasswordResetView.as_view(
            template_name="registration/form_page.html",
            extra_context={
                "title": "Forgot your password?",
                "intro": "Give the address of your account; we send you a link to set a new "
                "password.",
                "submit": "Send the link",
            },
        ),
        name="password_reset",
    ),
    path(
        "password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(
            template_name="registration/message_page.html",
            extra_context={
                "title": "Check your mail",
                "text": "If an account has that address, a link to set a new password is on "
                "its way.",
            },
        ),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="registration/form_page.html",
            success_url=reverse_lazy("password_reset_complete"),
            extra_context={"title": "Set your password", "submit": "Set password"},
        ),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="registration/message_page.html",
            extra_context={
                "title": "Password set",
                "text": "Your password is set; you can sign in now.",
                "sign_in": True,
            },
        ),
        name="password_reset_complete",
    ),
    path("keys/", api_keys, name="api-keys"),
    path("keys/<int:key_id>/revoke/", api_key_revoke, name="api-key-revoke"),
    path("export/", export, name="account-export"),
    path("users/", users, name="users"),
    path("users/<int:user_id>/delete/", user_delete, name="user-delete"),
]
