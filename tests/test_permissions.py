"""Every HTML page, API endpoint and media file x every kind of user, with the expected status.

alice owns the gallery; bob is a member (as viewer, or as editor); charlie is a stranger; and
an anonymous visitor. Strangers get 404 everywhere inside a gallery (they must not learn that it
exists), viewers get 403 on every change, editors may upload and tag, only the owner shares and
deletes. Anonymous visitors are sent to the login page (HTML) or refused (API, 401).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from gallery.actions.accounts import do_create_api_key
from gallery.models import ApiKey, Face, Gallery, GalleryMember, Person, Photo
from tests.factories import (
    FaceFactory,
    GalleryFactory,
    PersonFactory,
    PhotoFactory,
    World,
    jpeg,
    make_world,
)


def _app_routes() -> set[str]:
    """Every named route outside the Django admin, as "namespace:name"."""

    def walk(patterns: list, namespace: str) -> set[str]:
        names: set[str] = set()
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace != "admin":
                    inner = ":".join(filter(None, [namespace, pattern.namespace]))
                    names |= walk(pattern.url_patterns, inner)
            elif isinstance(pattern, URLPattern) and pattern.name:
                names.add(":".join(filter(None, [namespace, pattern.name])))
        return names

    # Sign-in pages, the public schema and docs and the health check hold no gallery data.
    public = {"login", "logout", "api-schema", "api-docs", "health"}
    return walk(get_resolver().url_patterns, "") - public


ACTORS = ["owner", "viewer", "editor", "stranger", "anonymous"]


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    url: Callable[[World, dict[str, User]], str]
    expected: dict[str, int]
    data: Callable[[World, dict[str, User]], Any] = lambda w, u: None
    json: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def codes(owner: int, viewer: int, editor: int, stranger: int, anonymous: int) -> dict[str, int]:
    return dict(zip(ACTORS, [owner, viewer, editor, stranger, anonymous], strict=True))


# HTML: anonymous visitors are redirected to the login page (302).
HTML_READ = codes(200, 200, 200, 404, 302)
HTML_WRITE = codes(302, 403, 302, 404, 302)
HTML_OWNER = codes(302, 403, 403, 404, 302)
HTML_ANY_USER = codes(200, 200, 200, 200, 302)
# API: anonymous requests get 401 with a challenge.
API_READ = codes(200, 200, 200, 404, 401)
PRIVATE_HTML = codes(200, 404, 404, 404, 302)
PRIVATE_API = codes(200, 404, 404, 404, 401)


def api_write(ok: int) -> dict[str, int]:
    return codes(ok, 403, ok, 404, 401)


def api_owner(ok: int) -> dict[str, int]:
    return codes(ok, 403, 403, 404, 401)


def _u(name: str, *args: Callable[[World], object]) -> Callable[[World, dict[str, User]], str]:
    return lambda w, users: reverse(name, args=[arg(w) for arg in args])


def _media(field_of: Callable[[World], str]) -> Callable[[World, dict[str, User]], str]:
    return lambda w, users: reverse("gallery:media", kwargs={"path": field_of(w)})


def _upload(w: World, users: dict[str, User]) -> dict[str, object]:
    return {"files": [SimpleUploadedFile("new.jpg", jpeg(50, 50, (1, 2, 3)), "image/jpeg")]}


def _private_person(w: World, *, hidden: bool = False) -> Person:
    """alice's person who appears only in a gallery shared with nobody: only alice sees them."""
    private = GalleryFactory(owner=w.gallery.owner, name="Private")
    name = f"{SECRET_NAME} (hidden)" if hidden else SECRET_NAME
    person = cast(Person, PersonFactory(owner=w.gallery.owner, name=name, hidden=hidden))
    FaceFactory(photo=PhotoFactory(gallery=private), person=person, assignment="confirmed")
    return person


SECRET_NAME = "Secret Sam"


def _other_gallery(w: World, users: dict[str, User], bob_role: str) -> Gallery:
    """Another gallery of alice's, shared with bob as `bob_role` (a place to move photos to)."""
    gallery = cast(Gallery, GalleryFactory(owner=w.gallery.owner, name="Elsewhere"))
    GalleryMember.objects.create(gallery=gallery, user=users["bob"], role=bob_role)
    return gallery


def _shared_person(w: World) -> Person:
    """Another person of alice's with a face in the shared gallery (a merge target)."""
    person = cast(Person, PersonFactory(owner=w.gallery.owner, name="Anne"))
    FaceFactory(photo=w.photo, person=person, assignment="confirmed")
    return person


def _alices_key(users: dict[str, User]) -> ApiKey:
    return do_create_api_key(users["alice"], "script").key


HIDDEN = lambda w: _private_person(w).pk  # noqa: E731
G = lambda w: w.gallery.pk  # noqa: E731
P = lambda w: w.photo.pk  # noqa: E731
F = lambda w: w.face.pk  # noqa: E731
PERSON = lambda w: w.person.pk  # noqa: E731
B = lambda w: w.batch.pk  # noqa: E731

ENDPOINTS = [
    # HTML pages and forms
    Endpoint("gallery list", "get", _u("gallery:gallery-list"), HTML_ANY_USER),
    Endpoint(
        "gallery create",
        "post",
        _u("gallery:gallery-create"),
        codes(302, 302, 302, 302, 302),
        data=lambda w, u: {"name": "Mine"},
    ),
    Endpoint("gallery page", "get", _u("gallery:gallery-detail", G), HTML_READ),
    Endpoint(
        "gallery update",
        "post",
        _u("gallery:gallery-update", G),
        HTML_WRITE,
        data=lambda w, u: {"name": "Renamed", "tags": "a, b"},
    ),
    Endpoint(
        "gallery share",
        "post",
        _u("gallery:gallery-share", G),
        HTML_OWNER,
        data=lambda w, u: {"username": "dave", "role": "viewer"},
    ),
    Endpoint(
        "gallery unshare",
        "post",
        lambda w, u: reverse("gallery:gallery-unshare", args=[w.gallery.pk, u["bob"].pk]),
        HTML_OWNER,
    ),
    Endpoint("gallery delete", "post", _u("gallery:gallery-delete", G), HTML_OWNER),
    Endpoint("photo upload", "post", _u("gallery:photo-upload", G), HTML_WRITE, data=_upload),
    Endpoint("batch progress", "get", _u("gallery:batch-progress", G, B), HTML_READ),
    Endpoint("photo page", "get", _u("gallery:photo-detail", P), HTML_READ),
    Endpoint("photo delete", "post", _u("gallery:photo-delete", P), HTML_WRITE),
    Endpoint("photo reprocess", "post", _u("gallery:photo-reprocess", P), HTML_WRITE),
    Endpoint(
        "face fragment",
        "get",
        _u("gallery:face-detail", F),
        HTML_READ,
        headers={"HX-Request": "true"},
    ),
    Endpoint(
        "face tag",
        "post",
        _u("gallery:face-tag", F),
        HTML_WRITE,
        data=lambda w, u: {"name": "Zed"},
    ),
    Endpoint("face untag", "post", _u("gallery:face-untag", F), HTML_WRITE),
    Endpoint("people list", "get", _u("gallery:person-list"), HTML_ANY_USER),
    Endpoint("person page", "get", _u("gallery:person-detail", PERSON), HTML_READ),
    Endpoint(
        "person rename",
        "post",
        _u("gallery:person-rename", PERSON),
        HTML_OWNER,
        data=lambda w, u: {"name": "Annie"},
    ),
    # Media files
    Endpoint("media original", "get", _media(lambda w: w.photo.original.name), HTML_READ),
    Endpoint("media thumbnail", "get", _media(lambda w: w.photo.thumbnail.name), HTML_READ),
    Endpoint("media preview", "get", _media(lambda w: w.photo.preview.name), HTML_READ),
    Endpoint("media face crop", "get", _media(lambda w: w.face.crop.name), HTML_READ),
    Endpoint(
        "media path traversal",
        "get",
        lambda w, u: "/media/originals/" + str(w.gallery.pk) + "/../../../secret_key",
        codes(404, 404, 404, 404, 302),
    ),
    # REST API
    Endpoint("api gallery list", "get", _u("api:gallery-list"), codes(200, 200, 200, 200, 401)),
    Endpoint(
        "api gallery create",
        "post",
        _u("api:gallery-list"),
        codes(201, 201, 201, 201, 401),
        data=lambda w, u: {"name": "Mine"},
        json=True,
    ),
    Endpoint("api gallery", "get", _u("api:gallery-detail", G), API_READ),
    Endpoint(
        "api gallery update",
        "patch",
        _u("api:gallery-detail", G),
        api_write(200),
        data=lambda w, u: {"tags": ["x"]},
        json=True,
    ),
    Endpoint(
        "api gallery replace",
        "put",
        _u("api:gallery-detail", G),
        api_write(200),
        data=lambda w, u: {"name": "Replaced"},
        json=True,
    ),
    Endpoint("api gallery delete", "delete", _u("api:gallery-detail", G), api_owner(204)),
    Endpoint("api members", "get", _u("api:member-list", G), API_READ),
    Endpoint(
        "api share",
        "post",
        _u("api:member-list", G),
        api_owner(201),
        data=lambda w, u: {"username": "dave", "role": "editor"},
        json=True,
    ),
    Endpoint(
        "api unshare",
        "delete",
        lambda w, u: reverse("api:member-detail", args=[w.gallery.pk, u["bob"].pk]),
        api_owner(204),
    ),
    Endpoint("api photo list", "get", _u("api:gallery-photos", G), API_READ),
    Endpoint("api photo upload", "post", _u("api:gallery-photos", G), api_write(201), data=_upload),
    Endpoint("api batch", "get", _u("api:batch-detail", G, B), API_READ),
    Endpoint("api photo", "get", _u("api:photo-detail", P), API_READ),
    Endpoint("api photo delete", "delete", _u("api:photo-detail", P), api_write(204)),
    Endpoint("api photo faces", "get", _u("api:photo-faces", P), API_READ),
    Endpoint("api face", "get", _u("api:face-detail", F), API_READ),
    Endpoint(
        "api face tag",
        "post",
        _u("api:face-tag", F),
        api_write(200),
        data=lambda w, u: {"name": "Zed"},
        json=True,
    ),
    Endpoint("api face untag", "post", _u("api:face-untag", F), api_write(200)),
    Endpoint("api people", "get", _u("api:person-list"), codes(200, 200, 200, 200, 401)),
    Endpoint(
        "api person create",
        "post",
        _u("api:person-list"),
        codes(201, 201, 201, 201, 401),
        data=lambda w, u: {"name": "Solo"},
        json=True,
    ),
    Endpoint("api person", "get", _u("api:person-detail", PERSON), API_READ),
    Endpoint(
        "api person rename",
        "patch",
        _u("api:person-detail", PERSON),
        api_owner(200),
        data=lambda w, u: {"name": "Annie"},
        json=True,
    ),
    Endpoint("api person faces", "get", _u("api:person-faces", PERSON), API_READ),
    Endpoint("api person delete", "delete", _u("api:person-detail", PERSON), api_owner(204)),
    Endpoint("person delete", "post", _u("gallery:person-delete", PERSON), HTML_OWNER),
    # Account pages: each user's own; user management is for staff (none of these users).
    Endpoint("account", "get", _u("account"), HTML_ANY_USER),
    Endpoint("password change", "get", _u("password_change"), HTML_ANY_USER),
    Endpoint("api keys", "get", _u("api-keys"), HTML_ANY_USER),
    Endpoint(
        "api key revoke",
        "post",
        lambda w, u: reverse("api-key-revoke", args=[_alices_key(u).pk]),
        codes(302, 404, 404, 404, 302),
    ),
    Endpoint("export", "get", _u("account-export"), HTML_ANY_USER),
    Endpoint("users", "get", _u("users"), codes(404, 404, 404, 404, 302)),
    Endpoint(
        "user delete",
        "post",
        lambda w, u: reverse("user-delete", args=[u["dave"].pk]),
        codes(404, 404, 404, 404, 302),
    ),
    # A person who appears only in an unshared gallery exists for nobody but the owner.
    Endpoint("private person page", "get", _u("gallery:person-detail", HIDDEN), PRIVATE_HTML),
    Endpoint(
        "private person rename",
        "post",
        _u("gallery:person-rename", HIDDEN),
        codes(302, 404, 404, 404, 302),
        data=lambda w, u: {"name": "Renamed"},
    ),
    Endpoint("api private person", "get", _u("api:person-detail", HIDDEN), PRIVATE_API),
    Endpoint("api private person faces", "get", _u("api:person-faces", HIDDEN), PRIVATE_API),
    # Pages other modules added on top (tagging workflow, search by face).
    Endpoint("face confirm", "post", _u("gallery:face-confirm", F), HTML_WRITE),
    Endpoint("face not this person", "post", _u("gallery:face-reject", F), HTML_WRITE),
    Endpoint("suggestions", "get", _u("gallery:suggestion-list"), HTML_ANY_USER),
    Endpoint(
        "suggestions bulk",
        "post",
        _u("gallery:suggestion-bulk"),
        codes(302, 302, 302, 302, 302),
        data=lambda w, u: {"action": "confirm", "faces": [w.face.pk]},
    ),
    Endpoint("unknown faces", "get", _u("gallery:unknown-list"), HTML_ANY_USER),
    Endpoint(
        "unknown name",
        "post",
        _u("gallery:unknown-name"),
        codes(302, 302, 302, 302, 302),
        data=lambda w, u: {"name": "Zed", "faces": [w.face.pk]},
    ),
    Endpoint(
        "person merge",
        "post",
        _u("gallery:person-merge", PERSON),
        HTML_OWNER,
        data=lambda w, u: {"into": _shared_person(w).pk},
    ),
    Endpoint("person hide", "post", _u("gallery:person-hide", PERSON), HTML_OWNER),
    Endpoint("search page", "get", _u("gallery:search"), HTML_ANY_USER),
    # People and photo pages (issue 14): drawing faces, "not a face", strangers, covers,
    # downloads, bulk actions, the timeline.
    Endpoint("photo download", "get", _u("gallery:photo-download", P), HTML_READ),
    Endpoint(
        "face drawn by hand",
        "post",
        _u("gallery:face-add", P),
        HTML_WRITE,
        data=lambda w, u: {"left": 300, "top": 200, "width": 90, "height": 90},
    ),
    # "Not a face" is a training label: the gallery's owner (or staff) decides.
    Endpoint("face not a face", "post", _u("gallery:face-not-face", F), HTML_OWNER),
    Endpoint("face is a face after all", "post", _u("gallery:face-use", F), HTML_OWNER),
    # Overruling the filter ("this face is fine, use it") is a training label too (issue 12).
    Endpoint(
        "face overrule",
        "post",
        _u("gallery:face-overrule", F),
        HTML_OWNER,
        data=lambda w, u: {"decision": "approve"},
    ),
    # Ignoring a stranger takes the face off the owner's "Who is unknown?": the owner decides.
    Endpoint("face ignore", "post", _u("gallery:face-ignore", F), HTML_OWNER, data=lambda w, u: {}),
    Endpoint(
        "person cover",
        "post",
        _u("gallery:person-cover", PERSON),
        HTML_OWNER,
        data=lambda w, u: {"face": w.face.pk},
    ),
    Endpoint(
        "photos bulk download",
        "post",
        _u("gallery:photos-bulk", G),
        HTML_READ,
        data=lambda w, u: {"action": "download", "photo": [w.photo.pk]},
    ),
    Endpoint(
        "photos bulk delete",
        "post",
        _u("gallery:photos-bulk", G),
        HTML_WRITE,
        data=lambda w, u: {"action": "delete", "photo": [w.photo.pk]},
    ),
    # Moving needs write access to both galleries: bob edits the first target, only views the
    # second.
    Endpoint(
        "photos bulk move",
        "post",
        _u("gallery:photos-bulk", G),
        HTML_WRITE,
        data=lambda w, u: {
            "action": "move",
            "photo": [w.photo.pk],
            "target": _other_gallery(w, u, GalleryMember.Role.EDITOR).pk,
        },
    ),
    Endpoint(
        "photos bulk move to a gallery bob only views",
        "post",
        _u("gallery:photos-bulk", G),
        codes(302, 403, 403, 404, 302),
        data=lambda w, u: {
            "action": "move",
            "photo": [w.photo.pk],
            "target": _other_gallery(w, u, GalleryMember.Role.VIEWER).pk,
        },
    ),
    Endpoint("timeline", "get", _u("gallery:timeline"), HTML_ANY_USER),
    Endpoint(
        "unknown ignore",
        "post",
        _u("gallery:unknown-ignore"),
        codes(302, 302, 302, 302, 302),
        data=lambda w, u: {"face": [w.face.pk]},
    ),
    Endpoint(
        "api face search without image",
        "post",
        _u("api-face-search"),
        codes(400, 400, 400, 400, 401),
        data=lambda w, u: {},
    ),
]

# The staff review queue (recognition/urls.py): none of these users is staff, so every signed-in
# one gets 404, as a stranger would. Listed once the routes exist in this tree.
STAFF_ONLY = codes(404, 404, 404, 404, 302)
if "review:review-queue" in _app_routes():
    ENDPOINTS += [
        Endpoint("review queue", "get", _u("review:review-queue"), STAFF_ONLY),
        Endpoint(
            "review bulk",
            "post",
            _u("review:review-bulk"),
            STAFF_ONLY,
            data=lambda w, u: {"decision": "approve", "faces": [w.face.pk]},
        ),
        Endpoint(
            "review decide",
            "post",
            _u("review:review-decide", F),
            STAFF_ONLY,
            data=lambda w, u: {"decision": "approve"},
        ),
        Endpoint(
            "review image",
            "get",
            lambda w, u: reverse("review:review-image", args=[w.face.pk, "crop"]),
            STAFF_ONLY,
        ),
    ]

# Routes deliberately left out of the table, with the reason.
NOT_IN_TABLE = {
    # Public by design and holding no gallery data (tests/test_accounts.py): self-registration
    # (404 unless turned on) and the password-reset and password-changed pages.
    "register",
    "password_change_done",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    # Names no object of a gallery: a missing merge redirects; the target person is checked
    # like person merge (tests/test_tagging_views.py covers it with a real merge).
    "gallery:merge-undo",
}


@pytest.fixture
def users(alice: User, bob: User, charlie: User) -> dict[str, User]:
    return {
        "alice": alice,
        "bob": bob,
        "charlie": charlie,
        "dave": User.objects.create(username="dave"),
    }


def _client(actor: str, users: dict[str, User]) -> Client:
    client = Client()
    user = {"owner": "alice", "viewer": "bob", "editor": "bob", "stranger": "charlie"}.get(actor)
    if user:
        client.force_login(users[user])
    return client


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_it_answers_each_user_with_the_expected_status(
    endpoint: Endpoint, actor: str, users: dict[str, User]
) -> None:
    bob_role = GalleryMember.Role.EDITOR if actor == "editor" else GalleryMember.Role.VIEWER
    world = make_world(users["alice"], users["bob"], bob_role)
    url = endpoint.url(world, users)
    data = endpoint.data(world, users)
    kwargs: dict[str, Any] = {"headers": endpoint.headers}
    if endpoint.json:
        kwargs.update(data=json.dumps(data), content_type="application/json")
    elif data is not None:
        kwargs["data"] = data
    response = getattr(_client(actor, users), endpoint.method)(url, **kwargs)

    expected = endpoint.expected[actor]
    assert response.status_code == expected, (endpoint.name, actor, response.content[:300])
    if expected == 302 and actor == "anonymous":
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("actor", ["viewer", "editor", "stranger"])
def test_it_leaves_everything_unchanged_when_refused(actor: str, users: dict[str, User]) -> None:
    bob_role = GalleryMember.Role.EDITOR if actor == "editor" else GalleryMember.Role.VIEWER
    world = make_world(users["alice"], users["bob"], bob_role)
    client = _client(actor, users)
    for endpoint in ENDPOINTS:
        # Refused requests, and the bulk forms that silently skip faces the user cannot write.
        bulk = actor != "editor" and endpoint.name in {
            "suggestions bulk",
            "unknown name",
            "unknown ignore",
        }
        if endpoint.method != "get" and (endpoint.expected[actor] in {403, 404} or bulk):
            data = endpoint.data(world, users)
            kwargs: dict[str, Any] = {}
            if endpoint.json:
                kwargs.update(data=json.dumps(data), content_type="application/json")
            elif data is not None:
                kwargs["data"] = data
            getattr(client, endpoint.method)(endpoint.url(world, users), **kwargs)
    world.gallery.refresh_from_db()
    assert world.gallery.name == "Holidays" and world.gallery.tags == ["beach"]
    assert Photo.objects.filter(gallery=world.gallery).count() == 1
    assert Face.objects.get(pk=world.face.pk).person_id == world.person.pk
    person = Person.objects.get(pk=world.person.pk)
    assert person.name == "Ann" and not person.hidden and person.cover_face_id is None
    assert person.merged_into_id is None
    assert set(world.gallery.members.values_list("user__username", flat=True)) == {"bob"}


def test_it_covers_every_route_of_the_app_and_the_api(users: dict[str, User]) -> None:
    """A new page or endpoint must get a row above (or a reason in NOT_IN_TABLE)."""
    world = make_world(users["alice"], users["bob"], GalleryMember.Role.VIEWER)
    covered = {resolve(e.url(world, users).split("?")[0]).view_name for e in ENDPOINTS}
    assert _app_routes() - covered - NOT_IN_TABLE == set()


# Where names are listed: none of them may show a person the user sees no face of.
NAME_LISTS = [
    _u("gallery:person-list"),
    _u("api:person-list"),
    _u("gallery:photo-detail", P),
    _u("gallery:suggestion-list"),
    _u("gallery:unknown-list"),
    _u("gallery:person-detail", PERSON),
    lambda w, u: reverse("gallery:person-list") + "?show=hidden",
    lambda w, u: reverse("gallery:timeline") + "?q=" + SECRET_NAME.split()[0],
]


@pytest.mark.parametrize("actor", ["owner", "viewer", "editor", "stranger"])
def test_it_shows_names_only_through_faces_the_user_may_see(
    actor: str, users: dict[str, User]
) -> None:
    bob_role = GalleryMember.Role.EDITOR if actor == "editor" else GalleryMember.Role.VIEWER
    world = make_world(users["alice"], users["bob"], bob_role)
    _private_person(world)
    _private_person(world, hidden=True)
    client = _client(actor, users)
    pages = "".join(client.get(url(world, users)).content.decode() for url in NAME_LISTS)
    assert (SECRET_NAME in pages) == (actor == "owner"), actor
    assert ("Ann" in pages) == (actor != "stranger"), actor
