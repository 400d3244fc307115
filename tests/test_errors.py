"""Error pages say what happened and what to do next (bastion.errors)."""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.errors import _page_detail
from tests.support.roles import post, token


def test_a_rate_limited_page_says_what_happened_and_how_long_to_wait(app: Flask) -> None:
    """A form sent too often answered with a page whose only sentence was "5 per 1
    minute": nothing said it had been refused for being sent too often, or when to retry."""
    client = app.test_client()
    csrf = token(client)
    statuses = [
        post(client, "/auth/reset", {"email": f"x{n}@example.org"}, csrf).status_code
        for n in range(6)
    ]
    assert statuses[-1] == 429, statuses
    refused = post(client, "/auth/reset", {"email": "y@example.org"}, csrf)
    page = refused.get_data(as_text=True)
    assert refused.mimetype == "text/html"
    assert (
        "Too many requests: this allows 5 a minute. Wait up to 1 minute, then try again."
        in page
    )
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Back to the home page" in page


@pytest.mark.parametrize(
    ("limit", "sentence"),
    [
        ("5 per 1 minute", "this allows 5 a minute. Wait up to 1 minute,"),
        ("20 per 1 hour", "this allows 20 an hour. Wait up to 1 hour,"),
        ("1 per 1 day", "this allows 1 a day. Wait up to 1 day,"),
        ("10 per 5 minutes", "this allows 10 every 5 minutes. Wait up to 5 minutes,"),
    ],
)
def test_a_limit_is_said_in_words_on_the_page(limit: str, sentence: str) -> None:
    # The limit's own text ("5 per 1 minute") stays the API's stable detail; a page says it
    # as a person would.
    assert sentence in _page_detail(429, limit)
    assert _page_detail(429, "Slow down, please.") == "Slow down, please."
    assert _page_detail(404, limit) == limit


def test_an_address_for_a_button_opened_as_a_page_says_so(app: Flask) -> None:
    """``GET /auth/logout`` said only "That method is not allowed here.": nothing told a
    person that the address belongs to a button, or where to go instead."""
    client = app.test_client()
    resp = client.get("/auth/logout")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 405 and resp.mimetype == "text/html"
    assert {m.strip() for m in resp.headers["Allow"].split(",")} >= {"POST"}
    assert ("This address is used by a button on the site&#39;s pages and cannot be opened "
            "as a page.") in page
    assert 'href="/"' in page and "That method is not allowed here." not in page
    # Its heading (and title) in the same plain words, not the protocol's "Method Not Allowed".
    assert "<h1>This address is not a page</h1>" in page
    assert "<title>405 This address is not a page · Bastion</title>" in page
    assert "Method Not Allowed" not in page
    # Not a method a browser's address bar sends: the general sentence stays.
    assert "That method is not allowed here." in client.delete("/").get_data(as_text=True)
    # The API's answer is unchanged: a problem document with the same status and Allow.
    api = client.get("/api/v1/auth/token")
    assert api.status_code == 405 and api.mimetype == "application/problem+json"
    assert api.get_json()["detail"] == "That method is not allowed here."
    assert "POST" in api.headers["Allow"]
