"""switch_model / model_status / drop_model_version on a real (small) library."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Gallery
from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION
from recognition.models import ReembedJob
from recognition.runtime import active_version
from tests.conftest import upload_file


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_switches_here_reports_status_and_drops_the_old_version(
    gallery: Gallery, alice: User, django_capture_on_commit_callbacks: object
) -> None:
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_upload_photos(gallery, [upload_file("biden/biden.jpg")], by=alice)
    status = _run("model_status")
    assert f"{DLIB_RESNET_VERSION}" in status and "ACTIVE" in status
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        output = _run("switch_model", DLIB_RESNET_FLIP_VERSION, "--here")
    assert "1/1 photos" in output
    assert active_version() == DLIB_RESNET_FLIP_VERSION
    assert ReembedJob.objects.get().state == ReembedJob.State.SWITCHED
    assert set(Face.objects.values_list("embedder_version", flat=True)) == {
        DLIB_RESNET_FLIP_VERSION
    }
    status = _run("model_status")
    assert "Switched, 1/1 photos" in status
    # The flip version is calibrated: no learning phase, but no filter of its own either.
    assert "learning phase" not in status
    assert "quality rules only until the filter is trained" in status
    with pytest.raises(CommandError, match="active model"):
        _run("drop_model_version", DLIB_RESNET_FLIP_VERSION)
    assert "kept_photos: 1" in _run("drop_model_version", DLIB_RESNET_VERSION)
    with pytest.raises(CommandError, match="no stopped re-embed job"):
        _run("switch_model", "--resume")
