"""Template helpers for media links, face boxes and the plain words of face states."""

from __future__ import annotations

from django import template
from django.urls import reverse

from gallery import presentation
from gallery.models import Face, Photo
from gallery.presentation import FaceStatus

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


@register.simple_tag
def face_status(face: Face) -> FaceStatus:
    """`{% face_status face as st %}`: the face's one state in plain words."""
    return presentation.face_status(face)


@register.filter
def plain_reasons(reasons: list) -> list[presentation.Reason]:
    return presentation.plain_reasons(reasons or [])


@register.inclusion_tag("gallery/_staff_details.html", takes_context=True)
def staff_details(context: template.Context, lines: list[str], summary: str = "Details") -> dict:
    """Numbers behind a plain sentence, in a disclosure, for staff only."""
    user = context.get("user")
    return {
        "show": bool(getattr(user, "is_staff", False)) and bool(lines),
        "lines": lines,
        "summary": summary,
    }


# Where the faces sit decides the crop of a square thumbnail; without faces, the upper part of
# a portrait (where heads usually are) and the middle of a landscape.
NO_FACE_FOCUS = (0.5, 0.3)


@register.simple_tag
def thumb_focus(photo: Photo) -> str:
    """CSS object-position that centres a square `object-fit: cover` thumbnail on the photo's
    faces (the box around them: `faces_left` .. `faces_bottom` from queries._with_faces)."""
    width, height = photo.width or 0, photo.height or 0
    left = getattr(photo, "faces_left", None)
    if not width or not height:
        return "50% 50%"
    if left is None:
        cx, cy = NO_FACE_FOCUS[0] * width, NO_FACE_FOCUS[1] * height
    else:
        cx = (left + photo.faces_right) / 2  # type: ignore[attr-defined]
        cy = (photo.faces_top + photo.faces_bottom) / 2  # type: ignore[attr-defined]
    side = min(width, height)  # the square's side, in photo pixels
    return f"{_position(cx, width, side):.1f}% {_position(cy, height, side):.1f}%"


def _position(centre: float, length: int, side: int) -> float:
    """object-position percentage putting `centre` mid-window (clamped to the photo)."""
    if length <= side:
        return 50.0
    offset = (centre - side / 2) / (length - side)
    return 100 * min(1.0, max(0.0, offset))


@register.filter
def get_item(mapping: dict, key: object) -> object:
    return mapping.get(key) if isinstance(mapping, dict) else None
