"""The shipped offline list of common and breached passwords."""

from __future__ import annotations

import pytest

from bastion.security import breached


@pytest.mark.asvs("V6.2.4")
def test_list_is_large_enough() -> None:
    assert breached.size() >= 100_000


@pytest.mark.asvs("V6.2.4", "V6.2.12")
@pytest.mark.parametrize("password", [
    "password123456", "qwertyuiopasdf", "PASSWORD123456", "iloveyouiloveyou", "1q2w3e4r5t6y",
    "sunshinedragon", "123456789012",
])
def test_classics_are_refused(password: str) -> None:
    assert breached.is_common(password)


@pytest.mark.parametrize("password", [
    "violet tractor morning 88", "correct horse battery staple 42", "kq8#Lm2!pZx9wq",
])
def test_uncommon_passphrases_pass(password: str) -> None:
    assert not breached.is_common(password)
