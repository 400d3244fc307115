"""Form fields tell assistive technology the truth: invalid only when they are, and
described only by hints and errors that are on the page."""

from __future__ import annotations

from html.parser import HTMLParser

from flask import Flask
from flask.testing import FlaskClient

from tests.factories import ArticleFactory, UserFactory
from tests.support.auth import csrf_token
from tests.support.roles import age_reauthentication, client_for


class _Fields(HTMLParser):
    """Every form control's attributes, and every id on the page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag in ("input", "textarea", "select") and found.get("type") != "hidden":
            self.controls.append(found)


def _check(html: str) -> _Fields:
    page = _Fields(html)
    assert page.controls, "no form fields on the page"
    for control in page.controls:
        name = control.get("name")
        assert "None" not in control.values(), (name, control)
        # ARIA: any aria-invalid value but "false" or absent counts as invalid.
        assert control.get("aria-invalid") in (None, "true"), (name, control)
        described = control.get("aria-describedby")
        if described is not None:
            refs = described.split()
            assert refs, (name, "aria-describedby is empty")
            assert set(refs) <= page.ids, (name, refs)
    return page


def _check_untouched(client: FlaskClient, *paths: str) -> None:
    """Each page renders its form, and no field of a form nobody sent is invalid."""
    for path in paths:
        resp = client.get(path)
        assert resp.status_code == 200, path
        page = _check(resp.get_data(as_text=True))
        assert not any("aria-invalid" in c for c in page.controls), path


def test_anonymous_forms_are_neither_invalid_nor_described_by_missing_ids(app: Flask) -> None:
    client = app.test_client()
    _check_untouched(client, "/auth/login", "/auth/register", "/auth/reset")


def test_signed_in_forms_are_neither_invalid_nor_described_by_missing_ids(app: Flask) -> None:
    editor = UserFactory(role_name="editor")
    article = ArticleFactory(author=editor)
    client = client_for(app, editor)
    _check_untouched(client, "/account", "/articles/new", f"/articles/{article.id}/edit")


def test_admin_forms_are_neither_invalid_nor_described_by_missing_ids(app: Flask) -> None:
    admin = UserFactory(role_name="admin")
    target = UserFactory(role_name="editor", two_factor=True)  # the reset form needs 2FA on
    client = client_for(app, admin)
    age_reauthentication(admin, 0)  # the reset form asks for a fresh sign-in first
    _check_untouched(client, "/admin/users", "/admin/audit", f"/admin/users/{target.id}/2fa-reset",
                     f"/admin/users/{target.id}/delete")


def test_a_refused_field_is_invalid_and_described_by_its_error(app: Flask) -> None:
    client = app.test_client()
    resp = client.post(
        "/auth/register",
        data={"csrf_token": csrf_token(client, "/auth/register"), "username": "x",
              "email": "not-an-email", "password": "", "confirm": ""},
    )
    assert resp.status_code in (200, 400, 422)
    page = _check(resp.get_data(as_text=True))
    email = next(c for c in page.controls if c.get("name") == "email")
    assert email.get("aria-invalid") == "true"
    assert "email-error" in str(email.get("aria-describedby")).split()
    assert "email-error" in page.ids
