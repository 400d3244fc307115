"""Forms that ask only for a password name the account, so password managers file it right.

A re-authentication prompt, a password reset and the account page's password change have
no username field of their own: a password manager then saves the new password under no
name, or offers the wrong account's. Each names its account in a hidden, unnamed
``autocomplete="username"`` input, which is never submitted.
"""

from __future__ import annotations

from html.parser import HTMLParser

from flask.testing import FlaskClient

from bastion.models import User
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form


class _Forms(HTMLParser):
    """The inputs of each form on a page, as attribute dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form":
            self.forms.append({"action": dict(attrs).get("action"), "inputs": []})
        elif tag == "input" and self.forms:
            inputs = self.forms[-1]["inputs"]
            assert isinstance(inputs, list)
            inputs.append(dict(attrs))


def _account_names(html: bytes, action: str | None = None) -> list[dict[str, str | None]]:
    parser = _Forms()
    parser.feed(html.decode())
    found = []
    for form in parser.forms:
        if action is not None and form["action"] != action:
            continue
        inputs = form["inputs"]
        assert isinstance(inputs, list)
        kinds = {i.get("autocomplete") for i in inputs}
        if kinds & {"current-password", "new-password"}:
            found += [i for i in inputs if i.get("autocomplete") == "username"]
    return found


def _assert_names(found: list[dict[str, str | None]], username: str) -> None:
    assert len(found) == 1, found
    (hint,) = found
    assert hint["value"] == username
    assert "hidden" in hint and "name" not in hint  # never shown, never submitted


def test_reset_page_names_the_account_the_link_is_for(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    post_form(client, "/auth/reset", {"email": "alice@example.org"})
    link = outbox.link("alice@example.org", "/auth/reset/")
    _assert_names(_account_names(client.get(link).data), "alice")
    # A refused attempt renders the form again, still naming the account.
    refused = post_form(
        client, "/auth/reset", {"password": "short", "confirm": "short"}, action=link
    )
    assert refused.status_code == 422
    _assert_names(_account_names(refused.data), "alice")


def test_reauth_and_password_change_name_the_signed_in_account(
    client: FlaskClient, user: User
) -> None:
    # The sign-in form has its own visible username field and no hidden one.
    login = _Forms()
    login.feed(client.get("/auth/login").data.decode())
    usernames = [
        i
        for f in login.forms
        for i in f["inputs"]  # type: ignore[attr-defined]
        if i.get("autocomplete") == "username"
    ]
    assert len(usernames) == 1 and "hidden" not in usernames[0]
    sign_in(client, "alice")
    _assert_names(_account_names(client.get("/auth/reauth").data), "alice")
    page = client.get("/account").data
    _assert_names(_account_names(page, action="/account/password"), "alice")
