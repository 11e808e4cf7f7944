"""The API does what its schema says: schemathesis generates requests from /api/schema/ for
every operation and sends them through the WSGI application (the same stack gunicorn serves),
signed in with an API key. No request may be a server error, and every answer must have a status,
a content type and a body that the schema documents. Bounded: a few examples per operation,
derandomized, so the run takes well under a minute."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, checks
from schemathesis.core.result import Ok

from faceweb.wsgi import application
from gallery.actions.accounts import do_create_api_key
from gallery.models import GalleryMember
from tests.factories import make_world

EXAMPLES = 15
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture
def api_schema(db: None) -> Iterator[schemathesis.BaseSchema]:
    # As Django's test client does: the request must not close the test's connection (and with
    # it the transaction that holds the test data).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def bearer(alice: User, bob: User) -> dict[str, str]:
    make_world(alice, bob, GalleryMember.Role.EDITOR)
    return {"Authorization": f"Bearer {do_create_api_key(alice, 'contract').secret}"}


def test_it_answers_every_request_as_the_schema_says(
    api_schema: schemathesis.BaseSchema, bearer: dict[str, str]
) -> None:
    failures: dict[str, str] = {}
    operations = 0
    for result in api_schema.get_all_operations():
        if not isinstance(result, Ok):
            failures[str(result)] = "the schema of this operation is invalid"
            continue
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Case) -> None:
            case.call_and_validate(headers=bearer, checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # each operation's first failure
            failures[operation.label] = str(exc)[:2000]
    assert operations >= 20
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
