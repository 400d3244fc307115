"""File names: the client's name is display metadata only; paths come from random names."""

from __future__ import annotations

import pytest

from bastion.models import Upload
from bastion.uploads import storage
from bastion.uploads.services import clean_original_name, download_name


def _upload(original: str, storage_name: str = "0" * 32 + ".png") -> Upload:
    return Upload(original_name=clean_original_name(original), storage_name=storage_name)


@pytest.mark.asvs("V5.4.2")
@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("holiday.jpg", "holiday.png"),  # the stored type wins over the claimed one
        ('a"; filename=evil.html\r\nX-Injected: 1.jpg', "a filename=evil.htmlX-Injected: 1.png"),
        ("..\\..\\boot.ini", "boot.png"),
        ("LPT1.jpg", "image.png"),
        ("con.tar.gz", "image.png"),
        ("", "image.png"),
        ("...", "image.png"),
        ("%2e%2e%2fpasswd", "2e2e2fpasswd.png"),
    ],
)
def test_download_names_are_safe_for_headers(original: str, expected: str) -> None:
    name = download_name(_upload(original))
    assert name == expected
    assert not any(c in name for c in "\"';\r\n\x00/\\\\")


@pytest.mark.asvs("V5.3.2")
def test_original_name_keeps_no_path_or_control_characters() -> None:
    assert clean_original_name("/etc/passwd") == "passwd"
    assert clean_original_name("a\x00b\u202ec.png") == "abc.png"  # NUL and bidi override gone
    assert len(clean_original_name("é" * 1000)) == 255


@pytest.mark.asvs("V5.3.2")
@pytest.mark.parametrize(
    "name", ["../etc/passwd", "/etc/passwd", "a" * 32 + ".php", "x.png", "..", "A" * 32 + ".png"]
)
def test_storage_refuses_anything_but_its_own_names(name: str) -> None:
    with pytest.raises(ValueError, match="storage name"):
        storage.path_for(name)


def test_new_names_are_random_and_valid() -> None:
    names = {storage.new_name("png") for _ in range(100)}
    assert len(names) == 100
    assert all(storage.NAME_RE.match(n) for n in names)
    assert storage.NAME_RE.match(storage.variant_name(names.pop(), 64))
