"""Error pages say what happened and what to do next (bastion.errors)."""

from __future__ import annotations

from flask import Flask

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
        "Too many requests: this allows 5 per 1 minute. Wait up to 1 minute, then try again."
        in page
    )
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Back to the home page" in page
