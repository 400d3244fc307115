"""Hostile or broken input: form errors or clean 4xx, never a 500, never a data change."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import User, UserSession
from tests.support.account_fixtures import sign_in
from tests.support.auth import csrf_token

FIELDS = ("username", "email", "password", "confirm", "current", "code", "display_name", "bio",
          "remember", "next")
PAYLOADS: dict[str, Any] = {
    "empty": "",
    "huge": "A" * 60_000,
    "nul": "alice\x00@example.org\x00",
    "mixed_unicode": "ａｌｉｃｅ\u202e\u0301𝔞𝔩𝔦𝔠𝔢 Ω≈ç√ 🙂 \ud7ff",  # noqa: RUF001
    "list": ["one", "two"],
}
PUBLIC = ("/auth/login", "/auth/register", "/auth/reset")
SIGNED_IN = ("/auth/reauth", "/account/email", "/account/password")


def _snapshot() -> tuple[Any, ...]:
    db.session.expire_all()
    users = db.session.execute(
        select(User.username, User.email, User.password_hash, User.display_name, User.bio,
               User.email_confirmed_at).order_by(User.id)
    ).all()
    return tuple(users), db.session.scalar(select(func.count()).select_from(UserSession))


def _post_all(client: FlaskClient, paths: tuple[str, ...], token: str) -> list[tuple[str, str, int]]:
    seen = []
    for path in paths:
        for kind, value in PAYLOADS.items():
            data = dict.fromkeys(FIELDS, value)
            resp = client.post(path, data={"csrf_token": token, **data})
            seen.append((path, kind, resp.status_code))
    return seen


@pytest.mark.asvs("V2.2.1", "V6.2.1")
def test_bad_input_never_500s_or_changes_data(client: FlaskClient, user: User,
                                              no_rate_limits: None) -> None:
    token = csrf_token(client, "/auth/login")
    before = _snapshot()
    results = _post_all(client, PUBLIC, token)
    sign_in(client, "alice")
    signed_in = _snapshot()
    token = csrf_token(client, "/account")
    results += _post_all(client, SIGNED_IN, token)
    # A form error (200/422), a refusal (4xx), never a 500 and never a redirect (= success).
    bad = [r for r in results if r[2] >= 500 or r[2] == 302]
    assert not bad, bad
    for kind in ("nul", "huge"):  # profile text: refused, not stored
        resp = client.post("/account/profile", data={"csrf_token": token,
                                                     "display_name": PAYLOADS[kind], "bio": ""})
        assert resp.status_code == 422
    assert _snapshot() == signed_in
    assert before[0] == signed_in[0]


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("body", [b'{"username": "alice", "password": 5}', b"\xff\xfe\x00garbage"])
def test_non_form_bodies_are_refused_cleanly(client: FlaskClient, body: bytes) -> None:
    for path in PUBLIC:
        resp = client.post(path, data=body, content_type="application/json")
        assert 400 <= resp.status_code < 500 or resp.status_code == 200
        assert resp.status_code != 302


def test_oversized_request_is_413(client: FlaskClient) -> None:
    resp = client.post("/auth/login", data={"username": "x" * (2 * 1024 * 1024)})
    assert resp.status_code == 413
