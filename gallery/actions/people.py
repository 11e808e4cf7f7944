"""People of a library: create, rename, hide, choose a cover face.

Which faces a person has is the job of recognition/actions/identity.py.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from gallery.actions.common import ActionError, clean_text
from gallery.models import Face, FaceEvent, Person


class SameNameError(ActionError):
    """Another person of the library already has the name: offer a merge instead."""

    def __init__(self, existing: Person) -> None:
        super().__init__(f"There is already a person called {existing.name}.")
        self.existing = existing


def same_name(person: Person, name: str) -> Person | None:
    """Another live person of `person`'s library called `name` (case and spaces ignored)."""
    return (
        Person.objects.filter(
            owner_id=person.owner_id, name__iexact=name.strip(), merged_into__isnull=True
        )
        .exclude(pk=person.pk)
        .order_by("id")
        .first()
    )


@transaction.atomic
def do_create_person(owner: User, name: str, by: User) -> Person:
    name = clean_text(name, limit=200)
    if not name:
        raise ActionError("A person needs a name.")
    person = Person.objects.create(owner=owner, name=name)
    FaceEvent.objects.create(
        user=by, person=person, action=FaceEvent.Action.PERSON_CREATED, data={"name": name}
    )
    return person


@transaction.atomic
def do_get_or_create_person(owner: User, name: str, by: User) -> Person:
    existing = (
        Person.objects.filter(owner=owner, name__iexact=name.strip(), merged_into__isnull=True)
        .order_by("id")
        .first()
    )
    return existing or do_create_person(owner, name, by)


@transaction.atomic
def do_rename_person(
    person: Person, name: str, by: User, *, allow_same_name: bool = False
) -> Person:
    """Rename a person. A name another person of the library has raises SameNameError (the
    page offers a merge) unless the caller says two people may share it."""
    cleaned = clean_text(name, limit=200)
    if not cleaned:
        raise ActionError("A person needs a name.")
    existing = same_name(person, cleaned)
    if existing is not None and not allow_same_name:
        raise SameNameError(existing)
    previous = person.name
    person.name = cleaned
    person.save(update_fields=["name", "updated_at"])
    FaceEvent.objects.create(
        user=by,
        person=person,
        action=FaceEvent.Action.PERSON_RENAMED,
        data={"from": previous, "to": cleaned},
    )
    return person


@transaction.atomic
def do_hide_person(person: Person, by: User, *, hidden: bool = True) -> Person:
    """Hide a person (a stranger, a poster) from the people pages; their tags stay."""
    person.hidden = hidden
    person.save(update_fields=["hidden", "updated_at"])
    FaceEvent.objects.create(
        user=by,
        person=person,
        action=FaceEvent.Action.PERSON_HIDDEN if hidden else FaceEvent.Action.PERSON_SHOWN,
        data={},
    )
    return person


@transaction.atomic
def do_set_cover_face(person: Person, face: Face | None, by: User) -> Person:
    """Show `face` for the person on the people pages (None: back to the newest confirmed one).

    The face must be one of the person's confirmed faces.
    """
    if face is not None and (
        face.person_id != person.pk or face.assignment != Face.Assignment.CONFIRMED
    ):
        raise ActionError(f"Only a confirmed face of {person.name} can be their cover.")
    person.cover_face = face
    person.save(update_fields=["cover_face", "updated_at"])
    FaceEvent.objects.create(
        user=by,
        person=person,
        face=face,
        action=FaceEvent.Action.PERSON_COVER_SET,
        data={"face": face.pk if face else None},
    )
    return person


def drop_cover_face(face: Face) -> int | None:
    """A face that is no longer a confirmed face of its person stops being their cover (the
    pages show the newest confirmed face instead); returns that person's id, if any. Caller
    holds a transaction."""
    person = Person.objects.select_for_update().filter(cover_face_id=face.pk).first()
    if person is None:
        return None
    person.cover_face = None
    person.save(update_fields=["cover_face", "updated_at"])
    return person.pk
