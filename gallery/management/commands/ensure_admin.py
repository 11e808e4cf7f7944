"""Create the first staff account if there is none, and say how to sign in."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the 'admin' superuser on first run (password: FACEWEB_ADMIN_PASSWORD or generated)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        password_file = settings.VAR_DIR / "admin_password.txt"
        if User.objects.filter(is_superuser=True).exists():
            hint = (
                f"the password is in {password_file}"
                if password_file.exists()
                else "use your existing superuser"
            )
            self.stdout.write(f"Sign in as an existing superuser ({hint}).")
            return
        password = os.environ.get("FACEWEB_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@localhost", password)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created superuser 'admin' with password '{password}' (saved in {password_file})."
            )
        )
