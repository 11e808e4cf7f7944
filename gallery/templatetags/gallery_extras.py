"""Template helpers for media links and face boxes."""

from __future__ import annotations

from django import template
from django.urls import reverse

from gallery.models import Face, Photo

register = template.Library()


@register.filter
def media_url(name: object) -> str:
    """The access-checked URL of a stored file name (or FieldFile); "" when there is none."""
    name = getattr(name, "name", name)
    if not name:
        return ""
    return reverse("gallery:media", kwargs={"path": str(name)})


@register.simple_tag
def face_box_style(face: Face, photo: Photo) -> str:
    """CSS placing a face box over the photo, in percent so it scales with the image."""
    if not photo.width or not photo.height:
        return "display:none"
    left = 100 * face.left / photo.width
    top = 100 * face.top / photo.height
    width = 100 * face.width / photo.width
    height = 100 * face.height / photo.height
    return f"left:{left:.3f}%;top:{top:.3f}%;width:{width:.3f}%;height:{height:.3f}%"
