"""The Content-Security-Policy breaks nothing: pages and the API docs run with no violation.

Every page loads its scripts from /static/ (htmx, app.js, pages.js) and declares behaviour with
data attributes; Swagger UI comes from drf-spectacular's split view, whose start-up script is a
file too. A violation shows in the browser console as an error.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD
from tests.factories import make_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_runs_the_pages_and_the_api_docs_without_a_policy_violation(
    page: object, live_server: object, alice: User
) -> None:
    world = make_world(alice)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # type: ignore[attr-defined]
    base = live_server.url  # type: ignore[attr-defined]
    sign_in(page, base, "alice", PASSWORD)
    for path in ("/", f"/galleries/{world.gallery.pk}/", f"/photos/{world.photo.pk}/", "/people/"):
        page.goto(base + path)  # type: ignore[attr-defined]
    page.goto(base + "/api/docs/")  # type: ignore[attr-defined]
    page.wait_for_selector(".swagger-ui .opblock")  # type: ignore[attr-defined]
    assert page.locator(".swagger-ui .opblock").count() > 10  # type: ignore[attr-defined]
    assert [e for e in errors if "Content Security Policy" in e or "Refused" in e] == []
