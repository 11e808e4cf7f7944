"""REST endpoint for search by face: POST an image, get the nearest people with verdicts.

Stateless: a photo with several faces is answered for the largest one (or `face`), and every
face is listed with its box and filter verdict so a client can ask again for another one.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from gallery.actions.common import ActionError
from gallery.actions.photos import check_upload
from gallery.serializers import BoxSerializer  # one "Box" component in the schema
from recognition.core.images import BadImage
from recognition.web.probe import (
    OOD_MESSAGE,
    ProbeAnalysis,
    SearchOutcome,
    analyse_probe,
    search_face,
)


class FaceSearchRequestSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="A photo (JPEG, PNG, ...) with at least one face.")
    face = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="Index of the face to search for (see `faces`); default: the largest face.",
    )
    top_n = serializers.IntegerField(default=5, min_value=1, max_value=20)
    photos_per_person = serializers.IntegerField(default=8, min_value=0, max_value=50)


class OodSerializer(serializers.Serializer):
    rejected = serializers.BooleanField()
    score = serializers.FloatField(allow_null=True)
    reasons = serializers.ListField(child=serializers.CharField())


class ProbeFaceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    box = BoxSerializer()
    ood = OodSerializer()


class HitPhotoSerializer(serializers.Serializer):
    photo_id = serializers.IntegerField()
    face_id = serializers.IntegerField()
    url = serializers.CharField()
    thumbnail = serializers.CharField(allow_blank=True)


class HitPersonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    url = serializers.CharField()


class HitSerializer(serializers.Serializer):
    person = HitPersonSerializer()
    distance = serializers.FloatField()
    verdict = serializers.ChoiceField(choices=["same", "possible", "unknown"])
    photo_count = serializers.IntegerField()
    photos = HitPhotoSerializer(many=True)


class FaceSearchResponseSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["matched", "unknown", "out_of_distribution"])
    message = serializers.CharField()
    image = serializers.DictField(child=serializers.IntegerField())
    faces = ProbeFaceSerializer(many=True)
    selected_face = serializers.IntegerField()
    answer = serializers.ChoiceField(choices=["same", "possible", "unknown"], allow_null=True)
    thresholds = serializers.DictField(child=serializers.FloatField())
    candidates = HitSerializer(many=True)


class NoFaceSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["no_face"])
    message = serializers.CharField()


def _media(name: str) -> str:
    return reverse("gallery:media", kwargs={"path": name}) if name else ""


def _body(analysis: ProbeAnalysis, index: int, outcome: SearchOutcome) -> dict[str, Any]:
    if outcome.rejected:
        state, message = "out_of_distribution", OOD_MESSAGE
    elif outcome.answer == "unknown":
        state, message = "unknown", "Nobody in your galleries is near this face."
    else:
        best = outcome.hits[0]
        state = "matched"
        message = ("This is " if outcome.answer == "same" else "Possibly ") + best.person.name
    return {
        "status": state,
        "message": message,
        "image": {"width": analysis.width, "height": analysis.height},
        "faces": [
            {
                "index": f.index,
                "box": {"left": f.left, "top": f.top, "width": f.width, "height": f.height},
                "ood": {"rejected": f.rejected, "score": f.score, "reasons": f.reasons},
            }
            for f in analysis.faces
        ],
        "selected_face": index,
        "answer": None if outcome.rejected else str(outcome.answer),
        "thresholds": {"same": outcome.same, "possible": outcome.possible},
        "candidates": [
            {
                "person": {
                    "id": hit.person.pk,
                    "name": hit.person.name,
                    "url": reverse("gallery:person-detail", args=[hit.person.pk]),
                },
                "distance": round(hit.distance, 4),
                "verdict": str(hit.verdict),
                "photo_count": hit.photo_count,
                "photos": [
                    {
                        "photo_id": face.photo_id,
                        "face_id": face.pk,
                        "url": reverse("gallery:photo-detail", args=[face.photo_id]),
                        "thumbnail": _media(face.photo.thumbnail.name),
                    }
                    for face in hit.photos
                ],
            }
            for hit in outcome.hits
        ],
    }


@extend_schema(
    operation_id="search_by_face",
    summary="Search by face",
    description=(
        "Upload a photo; its largest face (or `face`) goes through the out-of-distribution "
        "filter, then is compared with the named people of every gallery you can see. "
        "The photo is not stored. A rejected face answers `out_of_distribution` with reasons."
    ),
    request={"multipart/form-data": FaceSearchRequestSerializer},
    responses={
        200: FaceSearchResponseSerializer,
        400: OpenApiResponse(description="Not a usable photo, or no such face; the body says why."),
        422: OpenApiResponse(NoFaceSerializer, description="No face was found in the photo."),
    },
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def face_search(request: Request) -> Response:
    params = FaceSearchRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    upload = params.validated_data["image"]
    try:
        check_upload(upload)
        analysis = analyse_probe(upload.read())
    except (ActionError, BadImage) as exc:
        return Response({"image": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
    if not analysis.faces:
        return Response(
            {"status": "no_face", "message": "No face was found in this photo."},
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    index = params.validated_data.get("face", analysis.largest)
    if index >= len(analysis.faces):
        return Response(
            {"face": [f"The photo has {len(analysis.faces)} faces, numbered from 0."]},
            status=status.HTTP_400_BAD_REQUEST,
        )
    outcome = search_face(
        request.user,
        analysis.faces[index],
        analysis.embedder_version,
        top_n=params.validated_data["top_n"],
        photos_per_person=params.validated_data["photos_per_person"],
    )
    return Response(_body(analysis, index, outcome))
