"""The REST API. Every object named in a URL comes through gallery/access.py (404 for strangers,
403 for read-only members) and every write through an action (gallery/actions/,
recognition/actions/), as in the HTML views.

Viewsets here only map HTTP methods to functions; nothing is saved through a serializer.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.exceptions import NotAuthenticated
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from gallery import queries
from gallery.access import (
    access_batch,
    access_face,
    access_gallery,
    access_member,
    access_person,
    access_photo,
)
from gallery.actions.common import ActionError
from gallery.actions.galleries import (
    do_create_gallery,
    do_delete_gallery,
    do_share_gallery,
    do_unshare_gallery,
    do_update_gallery,
)
from gallery.actions.people import do_create_person, do_get_or_create_person, do_rename_person
from gallery.actions.photos import do_delete_photo, do_upload_photos
from gallery.models import Face, Gallery, GalleryMember, Person, Photo
from gallery.serializers import (
    BatchSerializer,
    FaceSerializer,
    GallerySerializer,
    GalleryWriteSerializer,
    MemberSerializer,
    PersonSerializer,
    PersonWriteSerializer,
    PhotoSerializer,
    ShareSerializer,
    TagSerializer,
    UploadRequestSerializer,
    UploadResultSerializer,
)
from recognition.actions.identity import do_delete_person, do_tag_face, do_untag_face

ERROR = OpenApiResponse(description="The request cannot be carried out; `detail` says why.")
NOT_FOUND = OpenApiResponse(description="No such object, or not visible to you.")
FORBIDDEN = OpenApiResponse(description="You may see this but not change it.")


def _user(request: Request) -> User:
    """The account behind an API request (every view requires authentication)."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user


def _refused(exc: ActionError | str) -> Response:
    return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)


# Galleries ---------------------------------------------------------------------------------


class GalleryViewSet(viewsets.GenericViewSet):
    serializer_class = GallerySerializer
    queryset = Gallery.objects.none()  # for the schema; requests use the access helpers

    @extend_schema(
        parameters=[OpenApiParameter("tag", str, description="Only galleries with this tag.")]
    )
    def list(self, request: Request) -> Response:
        galleries = queries.gallery_cards(request.user, tag=request.query_params.get("tag", ""))
        page = self.paginate_queryset(galleries)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=GalleryWriteSerializer, responses={201: GallerySerializer, 400: ERROR})
    def create(self, request: Request) -> Response:
        data = _valid(GalleryWriteSerializer, request)
        try:
            gallery = do_create_gallery(
                _user(request), data["name"], data["description"], data["tags"]
            )
        except ActionError as exc:
            return _refused(exc)
        return Response(self._one(request, gallery), status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: GallerySerializer, 404: NOT_FOUND})
    def retrieve(self, request: Request, gallery_id: int) -> Response:
        gallery, _ = access_gallery(request.user, gallery_id)
        return Response(self._one(request, gallery))

    @extend_schema(
        request=GalleryWriteSerializer,
        responses={200: GallerySerializer, 400: ERROR, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def update(self, request: Request, gallery_id: int) -> Response:
        """Replace name, description and tags (missing description and tags become empty)."""
        return self._write(request, gallery_id, partial=False)

    @extend_schema(
        request=GalleryWriteSerializer(partial=True),
        responses={200: GallerySerializer, 400: ERROR, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def partial_update(self, request: Request, gallery_id: int) -> Response:
        return self._write(request, gallery_id, partial=True)

    def _write(self, request: Request, gallery_id: int, *, partial: bool) -> Response:
        gallery, _ = access_gallery(request.user, gallery_id, for_write=True)
        data = _valid(GalleryWriteSerializer, request, partial=partial)
        try:
            do_update_gallery(
                gallery,
                name=data.get("name"),
                description=data.get("description"),
                tags=data.get("tags"),
            )
        except ActionError as exc:
            return _refused(exc)
        return Response(self._one(request, gallery))

    @extend_schema(responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND})
    def destroy(self, request: Request, gallery_id: int) -> Response:
        gallery, _ = access_gallery(request.user, gallery_id, owner_only=True)
        do_delete_gallery(gallery, by=_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _one(self, request: Request, gallery: Gallery) -> dict:
        """The gallery as the list shows it (with the user's role and photo count)."""
        return self.get_serializer(queries.gallery_cards(request.user).get(pk=gallery.pk)).data


class GalleryMemberViewSet(viewsets.GenericViewSet):
    """Who a gallery is shared with. Members may look; only the owner shares and unshares."""

    serializer_class = MemberSerializer
    queryset = GalleryMember.objects.none()
    pagination_class = None

    def list(self, request: Request, gallery_id: int) -> Response:
        gallery, _ = access_gallery(request.user, gallery_id)
        members = gallery.members.select_related("user").order_by("user__username")
        return Response(self.get_serializer(members, many=True).data)

    @extend_schema(
        request=ShareSerializer,
        responses={201: MemberSerializer, 400: ERROR, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def create(self, request: Request, gallery_id: int) -> Response:
        gallery, _ = access_gallery(request.user, gallery_id, owner_only=True)
        data = _valid(ShareSerializer, request)
        user = get_user_model().objects.filter(username=data["username"], is_active=True).first()
        if user is None:
            return _refused(f"There is no user called {data['username']!r}.")
        try:
            member = do_share_gallery(gallery, user, data["role"])
        except ActionError as exc:
            return _refused(exc)
        return Response(self.get_serializer(member).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND})
    def destroy(self, request: Request, gallery_id: int, user_id: int) -> Response:
        member, _ = access_member(request.user, gallery_id, user_id)
        do_unshare_gallery(member.gallery, member.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Photos ------------------------------------------------------------------------------------


class GalleryPhotoViewSet(viewsets.GenericViewSet):
    serializer_class = PhotoSerializer
    queryset = Photo.objects.none()
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=Photo.Status.values, description="Filter."),
        ],
        responses={200: PhotoSerializer(many=True), 404: NOT_FOUND},
    )
    def list(self, request: Request, gallery_id: int) -> Response:
        gallery, _ = access_gallery(request.user, gallery_id)
        photos = gallery.photos.order_by("-created_at", "-id")
        wanted = request.query_params.get("status", "")
        if wanted:
            photos = photos.filter(status=wanted)
        page = self.paginate_queryset(photos)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="Upload photos",
        description=(
            "Multipart upload of one or more files in the field `files`. Accepted files are "
            "queued for face detection; each rejected file is listed with the reason. Status "
            "201 when at least one file was accepted, 400 when none was."
        ),
        request={"multipart/form-data": UploadRequestSerializer},
        responses={
            201: UploadResultSerializer,
            400: UploadResultSerializer,
            403: FORBIDDEN,
            404: NOT_FOUND,
        },
    )
    def create(self, request: Request, gallery_id: int) -> Response:
        gallery, _ = access_gallery(request.user, gallery_id, for_write=True)
        files = request.FILES.getlist("files")
        if not files:
            return _refused("Send one or more files in the multipart field `files`.")
        try:
            result = do_upload_photos(gallery, files, by=_user(request))
        except ActionError as exc:
            return _refused(exc)
        body = {
            "batch": result.batch.pk,
            "accepted": PhotoSerializer(
                result.accepted, many=True, context=self.get_serializer_context()
            ).data,
            "rejected": result.rejected,
        }
        code = status.HTTP_201_CREATED if result.accepted else status.HTTP_400_BAD_REQUEST
        return Response(body, status=code)


class BatchViewSet(viewsets.GenericViewSet):
    serializer_class = BatchSerializer
    queryset = Photo.objects.none()

    @extend_schema(responses={200: BatchSerializer, 404: NOT_FOUND})
    def retrieve(self, request: Request, gallery_id: int, batch_id: int) -> Response:
        """Processing progress of one upload; poll it until `finished`."""
        batch, _ = access_batch(request.user, gallery_id, batch_id)
        progress = queries.batch_progress(batch)
        data = {
            "id": batch.pk,
            "total": progress.total,
            "queued": progress.queued,
            "processing": progress.processing,
            "done": progress.done,
            "failed": progress.failed,
            "finished": progress.finished,
            "rejected": batch.rejected,
        }
        return Response(BatchSerializer(data).data)


class PhotoViewSet(viewsets.GenericViewSet):
    serializer_class = PhotoSerializer
    queryset = Photo.objects.none()

    @extend_schema(responses={200: PhotoSerializer, 404: NOT_FOUND})
    def retrieve(self, request: Request, photo_id: int) -> Response:
        photo, _ = access_photo(request.user, photo_id)
        return Response(self.get_serializer(photo).data)

    @extend_schema(responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND})
    def destroy(self, request: Request, photo_id: int) -> Response:
        photo, _ = access_photo(request.user, photo_id, for_write=True)
        do_delete_photo(photo, by=_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: FaceSerializer(many=True), 404: NOT_FOUND})
    def faces(self, request: Request, photo_id: int) -> Response:
        photo, _ = access_photo(request.user, photo_id)
        faces = photo.faces.select_related("person", "suggested_person").order_by("left", "id")
        page = self.paginate_queryset(faces)
        context = self.get_serializer_context()
        return self.get_paginated_response(FaceSerializer(page, many=True, context=context).data)


# Faces -------------------------------------------------------------------------------------


class FaceViewSet(viewsets.GenericViewSet):
    serializer_class = FaceSerializer
    queryset = Face.objects.none()
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(responses={200: FaceSerializer, 404: NOT_FOUND})
    def retrieve(self, request: Request, face_id: int) -> Response:
        face, _ = access_face(request.user, face_id)
        return Response(self.get_serializer(face).data)

    @extend_schema(
        summary="Tag a face with a person",
        request=TagSerializer,
        responses={200: FaceSerializer, 400: ERROR, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def tag(self, request: Request, face_id: int) -> Response:
        face, _ = access_face(request.user, face_id, for_write=True)
        data = _valid(TagSerializer, request)
        try:
            # A person named in this request is not created when the tag itself is refused.
            with transaction.atomic():
                if data.get("person"):
                    person, _ = access_person(request.user, data["person"])
                else:
                    owner = face.photo.gallery.owner
                    person = do_get_or_create_person(owner, data["name"], by=_user(request))
                do_tag_face(face, person, by=_user(request))
        except ActionError as exc:
            return _refused(exc)
        except IntegrityError:
            return _refused("Someone else tagged this photo at the same time; try again.")
        return Response(self.get_serializer(face).data)

    @extend_schema(
        summary="Remove the person from a face",
        request=None,
        responses={200: FaceSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def untag(self, request: Request, face_id: int) -> Response:
        face, _ = access_face(request.user, face_id, for_write=True)
        do_untag_face(face, by=_user(request))
        return Response(self.get_serializer(face).data)


# People ------------------------------------------------------------------------------------


class PersonViewSet(viewsets.GenericViewSet):
    serializer_class = PersonSerializer
    queryset = Person.objects.none()
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(parameters=[OpenApiParameter("q", str, description="Name contains.")])
    def list(self, request: Request) -> Response:
        people = queries.people_cards(request.user, name=request.query_params.get("q", ""))
        page = self.paginate_queryset(people)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=PersonWriteSerializer, responses={201: PersonSerializer, 400: ERROR})
    def create(self, request: Request) -> Response:
        """A new person in your own library."""
        data = _valid(PersonWriteSerializer, request)
        try:
            person = do_create_person(_user(request), data["name"], by=_user(request))
        except ActionError as exc:
            return _refused(exc)
        person.face_count = 0  # type: ignore[attr-defined]
        return Response(self.get_serializer(person).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: PersonSerializer, 404: NOT_FOUND})
    def retrieve(self, request: Request, person_id: int) -> Response:
        person, _ = access_person(request.user, person_id)
        return Response(self._with_count(request, person))

    @extend_schema(
        summary="Rename a person",
        request=PersonWriteSerializer,
        responses={200: PersonSerializer, 400: ERROR, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def partial_update(self, request: Request, person_id: int) -> Response:
        person, _ = access_person(request.user, person_id, for_write=True)
        data = _valid(PersonWriteSerializer, request)
        try:
            do_rename_person(person, data["name"], by=_user(request))
        except ActionError as exc:
            return _refused(exc)
        return Response(self._with_count(request, person))

    @extend_schema(responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND})
    def destroy(self, request: Request, person_id: int) -> Response:
        """Delete a person of your own library with their templates and face embeddings; the
        faces stay, unnamed."""
        person, _ = access_person(request.user, person_id, for_write=True)
        do_delete_person(person, by=_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: FaceSerializer(many=True), 404: NOT_FOUND})
    def faces(self, request: Request, person_id: int) -> Response:
        """This person's faces in the galleries you can see."""
        person, _ = access_person(request.user, person_id)
        faces = queries.person_faces(request.user, person).select_related(
            "person", "suggested_person"
        )
        page = self.paginate_queryset(faces)
        context = self.get_serializer_context()
        return self.get_paginated_response(FaceSerializer(page, many=True, context=context).data)

    def _with_count(self, request: Request, person: Person) -> dict:
        person.face_count = queries.person_faces(request.user, person).count()  # type: ignore[attr-defined]
        return self.get_serializer(person).data


def _valid(serializer_class: type, request: Request, *, partial: bool = False) -> dict:
    """Validated input, or a 400 raised by DRF with the field errors."""
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
