"""The person page's review / merge / hide panel, as an inclusion tag so the page's view
needs no change: `{% load tagging_tags %}{% person_tools person %}`."""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Q

from gallery import queries
from gallery.models import Person, PersonMerge

register = template.Library()


@register.inclusion_tag("gallery/_person_tools.html", takes_context=True)
def person_tools(context: template.Context, person: Person) -> dict[str, Any]:
    from gallery.views.tagging import pending_faces

    user = context["request"].user
    can_edit = bool(context.get("can_edit"))
    pending = pending_faces(user).filter(Q(person=person) | Q(suggested_person=person))
    return {
        "person": person,
        "can_edit": can_edit,
        "csrf_token": context.get("csrf_token"),
        "pending_count": pending.count(),
        "merge_choices": list(queries.library_people(person.owner_id).exclude(pk=person.pk)),
        "merges": list(
            PersonMerge.objects.filter(target=person, undone_at__isnull=True)
            .select_related("source")
            .order_by("-created_at")
        ),
    }
