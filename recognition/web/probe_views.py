"""The "search by face" page: upload a photo, pick a face, see who it is among visible galleries.

The probe is analysed in memory; see recognition/web/probe.py for what is kept while the user
picks one of several faces, and for how long.
"""

from __future__ import annotations

import base64

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from faceweb.http import AuthedRequest
from gallery.access import access_gallery, writable_galleries
from gallery.actions.common import ActionError
from gallery.actions.photos import check_upload, do_upload_photos
from gallery.models import Gallery
from recognition.core.images import BadImage
from recognition.web.probe import (
    OOD_MESSAGE,
    ProbeAnalysis,
    ProbeExpired,
    SearchOutcome,
    analyse_probe,
    load_probe,
    preview_jpeg,
    save_probe,
    search_face,
)

TOP_N = 5


class FaceSearchForm(forms.Form):
    image = forms.FileField(label="Photo with a face")
    gallery = forms.ModelChoiceField(
        queryset=Gallery.objects.none(),
        required=False,
        empty_label="Don't keep the photo",
        label="Also add this photo to",
        help_text="Without a gallery the photo is only searched, never stored.",
    )

    def __init__(self, *args: object, user: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gallery"].queryset = writable_galleries(user).order_by("name")


class PickFaceForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput)
    face = forms.IntegerField(min_value=0)


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _results(
    request: AuthedRequest, form: FaceSearchForm, analysis: ProbeAnalysis, outcome: SearchOutcome
) -> HttpResponse:
    context = {
        "form": form,
        "analysis": analysis,
        "outcome": outcome,
        "probe_crop": _data_uri(outcome.face.crop_jpeg) if outcome.face.crop_jpeg else "",
        "ood_message": OOD_MESSAGE,
    }
    return render(request, "recognition/search.html", context)


def _add_to_gallery(request: AuthedRequest, gallery: Gallery, upload: object) -> None:
    gallery, _ = access_gallery(request.user, gallery.pk, for_write=True)
    try:
        result = do_upload_photos(gallery, [upload], by=request.user)
    except ActionError as exc:
        messages.error(request, f"The photo was not added to {gallery.name}: {exc}")
        return
    if result.accepted:
        messages.success(request, f"The photo was added to {gallery.name}.")
    for rejected in result.rejected:
        messages.warning(request, f"The photo was not added to {gallery.name}: {rejected['error']}")


@require_http_methods(["GET", "POST"])
@login_required
def search(request: AuthedRequest) -> HttpResponse:
    if request.method == "POST" and "token" in request.POST:
        return _pick(request)
    form = FaceSearchForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method != "POST" or not form.is_valid():
        status = 400 if request.method == "POST" else 200
        return render(request, "recognition/search.html", {"form": form}, status=status)
    upload = form.cleaned_data["image"]
    try:
        check_upload(upload)
        data = upload.read()
        upload.seek(0)
        analysis = analyse_probe(data)
    except (ActionError, BadImage) as exc:
        form.add_error("image", f"This file cannot be searched: {exc}.")
        return render(request, "recognition/search.html", {"form": form}, status=400)
    if form.cleaned_data["gallery"] is not None:
        _add_to_gallery(request, form.cleaned_data["gallery"], upload)
    if not analysis.faces:
        form.add_error("image", "No face was found in this photo; please choose another one.")
        return render(request, "recognition/search.html", {"form": form}, status=422)
    if len(analysis.faces) == 1:
        outcome = search_face(
            request.user, analysis.faces[0], analysis.embedder_version, top_n=TOP_N
        )
        return _results(request, FaceSearchForm(user=request.user), analysis, outcome)
    token = save_probe(request.user, analysis)
    context = {
        "form": FaceSearchForm(user=request.user),
        "pick": {
            "token": token,
            "preview": _data_uri(preview_jpeg(data)),
            "faces": [
                {
                    "face": face,
                    "box": face.box_percent(analysis.width, analysis.height),
                    "crop": _data_uri(face.crop_jpeg),
                }
                for face in analysis.faces
            ],
            "selected": analysis.largest,
        },
    }
    return render(request, "recognition/search.html", context)


def _pick(request: AuthedRequest) -> HttpResponse:
    pick = PickFaceForm(request.POST)
    form = FaceSearchForm(user=request.user)

    def refuse(error: str, status: int) -> HttpResponse:
        return render(
            request, "recognition/search.html", {"form": form, "error": error}, status=status
        )

    if not pick.is_valid():
        return refuse("Choose one of the faces.", 400)
    try:
        analysis = load_probe(request.user, pick.cleaned_data["token"], delete=True)
    except ProbeExpired as exc:
        return refuse(str(exc), 410)
    index = pick.cleaned_data["face"]
    if index >= len(analysis.faces):
        return refuse("That face is not in the photo; please upload it again.", 400)
    outcome = search_face(
        request.user, analysis.faces[index], analysis.embedder_version, top_n=TOP_N
    )
    return _results(request, form, analysis, outcome)
