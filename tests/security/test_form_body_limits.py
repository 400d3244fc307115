"""Url-encoded forms obey the form limits and say what is wrong with them.

Werkzeug applies ``MAX_FORM_PARTS`` to multipart bodies only: an anonymous url-encoded post
of half a million empty fields (1 MB of ``a&``) cost half a second of CPU to parse, before
any rate limit, on every form. A body that is not UTF-8 was dropped silently, so the CSRF
check called the form forged (and audited a CSRF failure) instead of saying what was wrong.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.extensions import db
from bastion.models import AuditEvent
from tests.conftest import csrf_from

URLENCODED = "application/x-www-form-urlencoded"


def _token(client: FlaskClient) -> str:
    return csrf_from(client.get("/auth/login").get_data(as_text=True))


@pytest.mark.asvs("V15.2.2", "V2.2.1")
def test_urlencoded_form_with_too_many_fields_is_413(app: Flask, client: FlaskClient) -> None:
    parts = app.config["MAX_FORM_PARTS"]
    body = f"csrf_token={_token(client)}&" + "&".join(f"f{i}=x" for i in range(parts * 10))
    resp = client.post("/auth/login", data=body, content_type=URLENCODED)
    assert resp.status_code == 413
    assert "too many fields" in resp.get_data(as_text=True)
    # The CSRF check read the form and was refused by the limit, not by a missing token.
    assert db.session.query(AuditEvent).filter_by(event="csrf.failure").count() == 0


@pytest.mark.asvs("V15.2.2")
def test_urlencoded_form_within_the_part_limit_is_read(app: Flask, client: FlaskClient) -> None:
    """Exactly ``MAX_FORM_PARTS`` fields (Werkzeug's count for multipart) still sign in."""
    parts = app.config["MAX_FORM_PARTS"]
    fields = [f"csrf_token={_token(client)}", "username=nobody", "password=wrong-password"]
    fields += [f"f{i}=" for i in range(parts - len(fields))]
    resp = client.post("/auth/login", data="&".join(fields), content_type=URLENCODED)
    assert resp.status_code == 200  # the generic sign-in error, the form was read
    assert "username or password is not right" in resp.get_data(as_text=True)


@pytest.mark.asvs("V2.2.1", "V16.3.3")
def test_urlencoded_form_that_is_not_utf8_is_a_clear_400(client: FlaskClient) -> None:
    body = f"csrf_token={_token(client)}&username=caf\xe9&password=x".encode("latin-1")
    resp = client.post("/auth/login", data=body, content_type=URLENCODED)
    assert resp.status_code == 400
    text = resp.get_data(as_text=True)
    assert "not valid UTF-8" in text
    assert "expired or was sent from another site" not in text
    assert db.session.query(AuditEvent).filter_by(event="csrf.failure").count() == 0
