"""People of a library: create, rename, hide.

Which faces a person has is the job of recognition/actions/identity.py.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from gallery.actions.common import ActionError, clean_display_name
from gallery.models import FaceEvent, Person


def do_create_person(owner: User, name: str, by: User) -> Person:
    name = clean_display_name(name, limit=200) if name.strip() else ""
    if not name:
        raise ActionError("A person needs a name.")
    person = Person.objects.create(owner=owner, name=name)
    FaceEvent.objects.create(user=by, person=person, action="person_created", data={"name": name})
    return person


def do_get_or_create_person(owner: User, name: str, by: User) -> Person:
    existing = (
        Person.objects.filter(owner=owner, name__iexact=name.strip(), merged_into__isnull=True)
        .order_by("id")
        .first()
    )
    return existing or do_create_person(owner, name, by)


def do_rename_person(person: Person, name: str, by: User) -> Person:
    cleaned = clean_display_name(name, limit=200) if name.strip() else ""
    if not cleaned:
        raise ActionError("A person needs a name.")
    previous = person.name
    person.name = cleaned
    person.save(update_fields=["name", "updated_at"])
    FaceEvent.objects.create(
        user=by, person=person, action="person_renamed", data={"from": previous, "to": cleaned}
    )
    return person


def do_hide_person(person: Person, by: User, *, hidden: bool = True) -> Person:
    """Hide a person (a stranger, a poster) from the people pages; their tags stay."""
    person.hidden = hidden
    person.save(update_fields=["hidden", "updated_at"])
    FaceEvent.objects.create(
        user=by, person=person, action="person_hidden" if hidden else "person_shown", data={}
    )
    return person
