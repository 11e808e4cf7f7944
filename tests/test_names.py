"""Names and tags keep what the user typed (they used to go through the file-name cleaner, so
"AC/DC" became "DC"); only control characters and stray white space go."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from gallery.actions.common import ActionError, clean_file_name, clean_text
from gallery.actions.galleries import do_create_gallery, do_update_gallery
from gallery.actions.people import do_create_person, do_rename_person


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("AC/DC", "AC/DC"),
        ("Zoë  O'Brien ", "Zoë O'Brien"),
        ("José\tMaría", "José María"),
        ("back\\slash", "back\\slash"),
        ("bell\x07\x1b[31m", "bell[31m"),
        ("👩‍👧 Mum & me", "👩\u200d👧 Mum & me"),
    ],
)
def test_it_keeps_the_characters_of_a_name(typed: str, kept: str) -> None:
    assert clean_text(typed, limit=200) == kept


def test_it_keeps_a_person_name_with_a_slash(alice: User) -> None:
    person = do_create_person(alice, "AC/DC", by=alice)
    assert person.name == "AC/DC"
    assert do_rename_person(person, "Simon & Garfunkel / 1970", by=alice).name == (
        "Simon & Garfunkel / 1970"
    )
    with pytest.raises(ActionError):
        do_rename_person(person, " \t\x00 ", by=alice)


def test_it_keeps_gallery_tags_with_slashes(alice: User) -> None:
    gallery = do_create_gallery(alice, "Gigs", tags=["Rock/Pop", "rock/pop", " 2024 / summer "])
    assert gallery.tags == ["rock/pop", "2024 / summer"]
    do_update_gallery(gallery, tags=["a/b", "\x07"])
    assert gallery.tags == ["a/b"]


def test_it_still_strips_paths_from_uploaded_file_names() -> None:
    assert clean_file_name("../../etc/passwd.jpg") == "passwd.jpg"
    assert clean_file_name("C:\\Users\\me\\photo.jpg") == "photo.jpg"
    assert clean_file_name("") == "unnamed"


def test_it_drops_characters_that_disguise_a_name() -> None:
    assert clean_text("abc\u202edef", limit=50) == "abcdef"
