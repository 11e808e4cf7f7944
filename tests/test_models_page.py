"""The staff page of model versions: who may see it, what it says, the switch it starts."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from gallery.actions.people import do_create_person
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery
from recognition.actions.identity import do_tag_face
from recognition.actions.models import do_start_reembed
from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION
from recognition.models import ReembedJob
from recognition.runtime import active_version
from tests.conftest import client_for, upload_file


def test_it_sends_anonymous_visitors_to_the_login_page(client: Client, db: None) -> None:
    response = client.get("/models/")
    assert response.status_code == 302 and "/login" in response["Location"]


def test_it_does_not_exist_for_a_user_who_is_not_staff(alice: User) -> None:
    assert client_for(alice).get("/models/").status_code == 404
    assert client_for(alice).post("/models/switch/", {"name": "x"}).status_code == 404
    assert not ReembedJob.objects.exists()


def test_it_lists_the_models_with_the_active_one_and_their_trust(staff: User) -> None:
    page = client_for(staff).get("/models/").content.decode()
    assert DLIB_RESNET_VERSION in page and DLIB_RESNET_FLIP_VERSION in page
    assert "In use" in page and "No model change yet" in page
    # The flip version is calibrated but has no filter of its own yet.
    assert "Calibrated; faces are checked for quality only (size, sharpness, pose" in page
    assert "names are not given automatically" not in page


def test_it_lists_an_uncalibrated_model_as_learning(staff: User, uncalibrated_flip: str) -> None:
    page = client_for(staff).get("/models/").content.decode()
    assert "Learning: names are not given automatically; faces are checked for quality only" in page


def test_it_switches_from_the_page_and_polls_the_job(
    staff: User, django_capture_on_commit_callbacks: object
) -> None:
    client = client_for(staff)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = client.post("/models/switch/", {"name": DLIB_RESNET_FLIP_VERSION})
    assert response.status_code == 302
    assert active_version() == DLIB_RESNET_FLIP_VERSION  # no photos: switched at once
    page = client.get("/models/").content.decode()
    assert "moved from dlib-resnet-v1 to dlib-resnet-flip-v1" in page
    # Calibrated, so no learning phase; its faces are checked by the quality rules only.
    assert "Automatic matching is in a learning phase" not in page
    assert "checked by the quality rules only" in page
    fragment = client.get("/models/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="reembed-job")
    assert fragment.content.decode().lstrip().startswith('<div id="reembed-job"')
    refused = client.post("/models/switch/", {"name": DLIB_RESNET_FLIP_VERSION}, follow=True)
    assert "already the active model" in refused.content.decode()


def test_it_searches_in_the_learning_phase_without_calling_anyone_the_same(
    gallery: Gallery,
    alice: User,
    django_capture_on_commit_callbacks: object,
    uncalibrated_flip: str,
) -> None:
    capture = django_capture_on_commit_callbacks
    with capture(execute=True):  # type: ignore[operator]
        result = do_upload_photos(
            gallery, [upload_file(p) for p in ("obama/obama.jpg", "obama/obama1.jpg")], by=alice
        )
    obama = do_create_person(alice, "Obama", by=alice)
    with capture(execute=True):  # type: ignore[operator]
        for photo in result.accepted:
            do_tag_face(Face.objects.get(photo=photo), obama, by=alice)
        do_start_reembed(DLIB_RESNET_FLIP_VERSION)
    assert active_version() == DLIB_RESNET_FLIP_VERSION
    response = client_for(alice).post("/search/", {"image": upload_file("obama/obama_small.jpg")})
    outcome = response.context["outcome"]
    assert outcome.hits[0].person == obama and outcome.answer == "possible"
    assert "Automatic matching is in a learning phase" in response.content.decode()


def test_its_forms_carry_the_csrf_token_a_browser_must_send(staff: User) -> None:
    """The switch and drop buttons are plain forms: without the token a browser got 403."""
    import re

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    page = client.get("/models/").content.decode()
    forms = re.findall(r'<form method="post" action="(/models/[a-z]+/)">(.*?)</form>', page, re.S)
    assert {action for action, _ in forms} == {"/models/switch/", "/models/drop/"}
    for action, body in forms:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
        assert token, f"{action} has no CSRF token"
    drop = dict(forms)["/models/drop/"]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', drop)
    assert token is not None
    response = client.post(
        "/models/drop/",
        {"csrfmiddlewaretoken": token.group(1), "name": DLIB_RESNET_FLIP_VERSION},
    )
    assert response.status_code == 302
