"""Account rules in ``bastion.auth.services``: the one stored form of an email address."""

from __future__ import annotations

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.auth.services import (
    canonical_email,
    email_spellings,
    email_taken,
    find_login_user,
    find_user_by_email,
)
from tests.factories import UserFactory
from tests.support.accounts import full_width

ACE = "user@xn--bcher-kva.example"


# Written as escapes where the spelling is the point: the ideographic full stop (U+3002),
# and 'u' followed by a combining diaeresis (U+0308) instead of the precomposed U+00FC.
@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("spelling", [
    "user@bücher.example",
    "user@xn--bcher-kva.example",
    "User@XN--BCHER-KVA.EXAMPLE",
    "  USER@BÜCHER.EXAMPLE  ",
    full_width("user@bücher.example"),
    "user@b\u00fccher\u3002example",
    "user@bu\u0308cher.example",
])
def test_every_spelling_of_an_idn_domain_is_one_address(spelling: str) -> None:
    """The domain is stored in IDNA ASCII: a Unicode and an ``xn--`` spelling of one
    mailbox made two accounts, and "taken" and reset lookups missed the other one."""
    assert canonical_email(spelling) == ACE


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize(("raw", "stored"), [
    ("Alice@Example.ORG", "alice@example.org"),
    ("Ünïcode@Bücher.example", "ünïcode@xn--bcher-kva.example"),  # local part: NFKC, lower case
    (full_width("ALICE") + "@example.org", "alice@example.org"),
    ("user@straße.example", "user@xn--strae-oqa.example"),  # IDNA 2008: not "strasse"
])
def test_the_local_part_stays_as_typed_in_lower_case(raw: str, stored: str) -> None:
    assert canonical_email(raw) == stored


@pytest.mark.asvs("V1.1.1", "V2.2.1")
@pytest.mark.parametrize("raw", [
    "user@xn--zz.example",  # looks like Punycode and is not
    "user@1.xn--4dbc.example",  # a right-to-left label next to a digit-first one
    "user@b\u00fccher..example",
    "user@bücher.local",  # a special-use name: not an address email-validator accepts
    "user@[192.0.2.1]",
    "no-at-sign",
])
def test_an_address_that_is_not_valid_stays_as_typed_in_lower_case(raw: str) -> None:
    """No such address passes the forms, so none is ever stored; lookups just find nothing."""
    assert canonical_email(raw) == raw.lower()
    assert canonical_email(raw.upper()) == raw.lower()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["bücher.example", "xn--bcher-kva.example",
                                                "example.org", "ÉCOLE.fr", "例え.テスト"]))
def test_the_canonical_form_is_its_own_canonical_form(local: str, domain: str) -> None:
    """Stored addresses are looked up by their canonical form: it must map to itself."""
    once = canonical_email(f"{local}@{domain}")
    assert canonical_email(once) == once


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.text(max_size=300))
def test_email_lookups_never_crash(app: Flask, raw: str) -> None:
    assert find_user_by_email(raw) is None
    assert not email_taken(raw)


@pytest.mark.asvs("V1.1.1")
def test_the_other_spelling_finds_the_account(app: Flask) -> None:
    user = UserFactory(email=ACE)
    for spelling in ("user@bücher.example", "USER@XN--BCHER-KVA.EXAMPLE"):
        assert email_taken(spelling)
        assert not email_taken(spelling, by_other_than=user.id)
        assert find_user_by_email(spelling) == user
        assert find_login_user(spelling) == user
    assert find_login_user(user.username) == user


def test_an_account_left_in_an_old_spelling_is_found_by_it(app: Flask) -> None:
    """Migration 0010 leaves two accounts holding one mailbox in two spellings as they are:
    each is found by the spelling it holds, and either spelling is taken."""
    newer = UserFactory(email=ACE)
    older = UserFactory(username="older", email="user@bücher.example")  # stored as given
    assert find_user_by_email("User@Bücher.example") == older
    assert find_user_by_email(ACE) == newer
    assert email_spellings(ACE) == (ACE, "user@bücher.example")
    assert email_taken("user@bücher.example", by_other_than=newer.id)
    assert email_taken(ACE, by_other_than=older.id)
