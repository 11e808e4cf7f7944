"""HTML forms: they parse and validate input; the writes happen in the action modules."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from gallery.models import GalleryMember


def split_tags(value: str) -> list[str]:
    """ "beach, Family ,2024" -> ["beach", "Family", "2024"]; actions normalise the case."""
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


class GalleryForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    tags = forms.CharField(
        required=False,
        max_length=1000,
        help_text="Comma-separated, e.g. holidays, family",
    )

    def clean_tags(self) -> list[str]:
        return split_tags(self.cleaned_data["tags"])


class ShareForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=GalleryMember.Role.choices, initial=GalleryMember.Role.VIEWER)

    def clean_username(self) -> User:
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(f"There is no user called {username!r}.")
        return user


class TagFaceForm(forms.Form):
    """An existing person (by id), or a name: the person of that name, or a new one."""

    person = forms.IntegerField(required=False, widget=forms.HiddenInput)
    name = forms.CharField(required=False, max_length=200)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("person") and not (data.get("name") or "").strip():
            raise forms.ValidationError("Type a name or pick a person.")
        return data


class PersonNameForm(forms.Form):
    name = forms.CharField(max_length=200)


class FaceBoxForm(forms.Form):
    """A face box drawn on the photo, in pixels of the original (the page converts)."""

    left = forms.IntegerField(min_value=0)
    top = forms.IntegerField(min_value=0)
    width = forms.IntegerField(min_value=1)
    height = forms.IntegerField(min_value=1)

    def box(self) -> tuple[int, int, int, int]:
        data = self.cleaned_data
        return data["left"], data["top"], data["width"], data["height"]
