"""People of a library: create, rename, hide.

Which faces a person has is the job of recognition/actions/identity.py.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from gallery.actions.common import ActionError, clean_text
from gallery.models import FaceEvent, Person


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
def do_rename_person(person: Person, name: str, by: User) -> Person:
    cleaned = clean_text(name, limit=200)
    if not cleaned:
        raise ActionError("A person needs a name.")
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
