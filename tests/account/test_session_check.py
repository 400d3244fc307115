"""The session check that history-guard.js asks before showing a page restored by Back.

It says only whether the session lives: 204 or 401, no page rendered, so a message waiting
for the next page ("Your profile is saved.") is still there, and no cookie is written for a
live session. Other sites' requests get no answer about the session.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from limits import parse_many
from werkzeug.test import TestResponse

from bastion.auth.sessions import revoke_all
from bastion.models import User
from tests.support.account_fixtures import sign_in
from tests.support.accounts import post_form

CHECK = "/account/session-check"
SAVED = b"Your profile is saved."
SIGN_IN_PLEASE = b"Please sign in to continue."
# What Chromium sends with history-guard.js's fetch.
SAME_ORIGIN_FETCH = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors",
                     "Sec-Fetch-Dest": "empty"}


def _leave_a_message(client: FlaskClient) -> None:
    """Save the profile without following the redirect: its message waits for the next page."""
    resp = post_form(client, "/account", {"display_name": "Alice", "bio": ""},
                     action="/account/profile")
    assert resp.status_code == 302


def _check(client: FlaskClient, method: str = "GET", **headers: str) -> TestResponse:
    return client.open(CHECK, method=method, headers={**SAME_ORIGIN_FETCH, **headers})


@pytest.mark.asvs("V14.3.1", "V7.4.1")
def test_a_live_session_is_answered_204_and_keeps_the_waiting_message(
    client: FlaskClient, user: User
) -> None:
    sign_in(client, "alice")
    _leave_a_message(client)
    for method in ("GET", "HEAD"):
        resp = _check(client, method)
        assert resp.status_code == 204 and resp.data == b"", method
        assert resp.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in resp.headers  # nothing taken from the session
    assert SAVED in client.get("/account").data


@pytest.mark.asvs("V14.3.1", "V7.4.1")
def test_an_ended_session_is_answered_401_without_a_sign_in_message(
    client: FlaskClient, user: User
) -> None:
    """Revoked elsewhere: 401, not the sign-in page with "Please sign in" for the page the
    guard loads next (a public page would have shown it for nothing)."""
    sign_in(client, "alice")
    assert _check(client).status_code == 204
    assert revoke_all(user.id) == 1
    resp = _check(client)
    assert resp.status_code == 401 and "Location" not in resp.headers
    assert resp.mimetype == "application/problem+json"  # no page rendered
    assert resp.headers["Cache-Control"] == "no-store"
    assert SIGN_IN_PLEASE not in client.get("/articles").data
    assert client.get("/account").status_code == 302  # the pages still send sign-in


@pytest.mark.asvs("V7.4.1")
def test_an_anonymous_visitor_is_answered_401_and_keeps_the_waiting_message(
    app: Flask, user: User
) -> None:
    client = app.test_client()
    sign_in(client, "alice")
    _leave_a_message(client)
    assert revoke_all(user.id) == 1
    assert _check(client).status_code == 401
    page = client.get("/articles").data
    assert SAVED in page and SIGN_IN_PLEASE not in page
    stranger = app.test_client()
    resp = _check(stranger)
    assert resp.status_code == 401 and "Set-Cookie" not in resp.headers


@pytest.mark.asvs("V3.5.1", "V3.5.4")
@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_other_sites_get_no_answer_about_the_session(
    client: FlaskClient, user: User, site: str
) -> None:
    """A top-level navigation from another site carries the Lax cookie: 204 (nothing
    happens) and a sign-in redirect would tell that site whether the visitor is signed in.
    Refused before the access policy, so signed in or not the answer is the same."""
    stranger = client.application.test_client()
    sign_in(client, "alice")
    _leave_a_message(client)
    answers = set()
    for who in (client, stranger):
        for mode, dest in (("navigate", "document"), ("cors", "empty"), ("no-cors", "image")):
            resp = _check(who, **{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode,
                                  "Sec-Fetch-Dest": dest})
            answers.add((resp.status_code, resp.mimetype))
    assert answers == {(403, "application/problem+json")}
    assert SAVED in client.get("/account").data  # the refusals rendered no page either


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "none"}, {}], ids=["typed", "no-metadata"])
def test_the_address_typed_or_a_client_without_fetch_metadata_is_answered(
    client: FlaskClient, user: User, headers: dict[str, str]
) -> None:
    sign_in(client, "alice")
    assert client.get(CHECK, headers=headers).status_code == 204


@pytest.mark.asvs("V2.3.2")
def test_the_default_rate_limit_applies_and_its_refusal_keeps_the_message(
    client: FlaskClient, user: User
) -> None:
    """As on every page without a limit of its own (``RATELIMIT_DEFAULT``); the 429 is no
    page either."""
    allowed = parse_many(client.application.config["RATELIMIT_DEFAULT"])[0].amount
    sign_in(client, "alice")
    _leave_a_message(client)
    answers = [_check(client).status_code for _ in range(allowed + 1)]
    assert set(answers[:-1]) == {204} and answers[-1] == 429
    assert SAVED in client.get("/articles").data
