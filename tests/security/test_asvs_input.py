"""Input canonicalisation, output contexts and cross-field rules (ASVS V1, V2, V3.7)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.auth import services
from bastion.extensions import db
from bastion.models import User
from bastion.security.redirects import is_safe_next
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import outbox, sign_in, user  # noqa: F401 - fixtures
from tests.support.accounts import Outbox, post_form, user_count

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "bastion" / "templates"
STATIC_JS = sorted((ROOT / "bastion" / "static").rglob("*.js"))


# V1.1.1 ------------------------------------------------------------------------------
@pytest.mark.asvs("V1.1.1")
def test_usernames_and_passwords_are_nfkc_normalised_once_before_checks(app: Flask) -> None:
    # Full-width letters and the "fi" ligature are the same text once NFKC-normalised.
    full_width_carol = "\uff23\uff41\uff52\uff4f\uff4c"
    created = services.create_user(full_width_carol, "carol@example.org",
                                   "of\ufb01ce chairs and lamps", confirmed=True)
    assert created.username == "carol"
    assert services.authenticate("carol", "office chairs and lamps") == created
    assert services.authenticate("\uff23\uff21\uff32\uff2f\uff2c", "of\ufb01ce chairs and lamps") == created
    # The canonical form is what the rules judge: a full-width name that is a taken one is taken.
    with pytest.raises(services.AccountError, match="taken"):
        services.create_user("\uff43\uff41\uff52\uff4f\uff4c", "carol2@example.org", "another long passphrase")


@pytest.mark.asvs("V1.1.1", "V3.7.2")
@pytest.mark.parametrize("target", ["/%2F%2Fevil.example", "/%252F%252Fevil.example", "/%5Cevil.example"])
def test_next_is_judged_in_decoded_form(target: str) -> None:
    assert not is_safe_next(target)


@pytest.mark.asvs("V1.1.1")
def test_next_is_percent_decoded_exactly_once(client: FlaskClient, user: User) -> None:  # noqa: F811
    # The query string decodes "%2525" to "%25"; the redirect must keep it, not decode again.
    resp = sign_in(client, "alice", next="/articles?q=100%25")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith("/articles?q=100%25")


# V1.2.3 ------------------------------------------------------------------------------
SCRIPT_BLOCK = re.compile(r"<script\b[^>]*>(.*?)</script>", re.S | re.I)
EXPRESSION = re.compile(r"{{(.*?)}}", re.S)


@pytest.mark.asvs("V1.2.3")
def test_template_data_reaches_a_script_context_only_through_tojson() -> None:
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        for block in SCRIPT_BLOCK.findall(path.read_text(encoding="utf-8")):
            for expr in EXPRESSION.findall(block):
                if "tojson" not in expr:
                    offenders.append(f"{path.relative_to(ROOT)}: {{{{{expr}}}}}")
    assert offenders == []


@pytest.mark.asvs("V1.2.3")
def test_tojson_escapes_a_script_breakout(app: Flask) -> None:
    html = app.jinja_env.from_string("<script>var d = {{ d | tojson }};</script>").render(
        d={"x": "</script><script>alert(1)</script>"}
    )
    assert html.count("</script>") == 1
    assert "\\u003c/script\\u003e" in html


@pytest.mark.asvs("V1.2.3")
def test_api_json_with_a_script_payload_is_never_sniffed_as_html(
    client: FlaskClient, app: Flask
) -> None:
    UserFactory(username="pat", role_name="editor")
    client._cookies.clear()  # type: ignore[attr-defined]
    token = client.post("/api/v1/auth/token", json={"username": "pat", "password": PASSWORD})
    access = token.get_json()["access_token"]
    payload = "</script><script>alert(document.domain)</script>"
    made = client.post("/api/v1/articles", headers={"Authorization": f"Bearer {access}"},
                       json={"title": payload, "body": payload, "publish": True})
    assert made.status_code == 201, made.get_json()
    resp = client.get(f"/api/v1/articles/{made.get_json()['id']}",
                      headers={"Authorization": f"Bearer {access}"})
    assert resp.mimetype == "application/json"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.get_json()["title"] == payload


# V1.3.11 -----------------------------------------------------------------------------
INJECTED = [
    "mallory@example.org\r\nBcc: victim@example.org",
    "mallory@example.org\nSubject: hi",
    "mallory@example.org%0d%0aBcc:victim@example.org",
    "not-an-address",
    "a@b@example.org",
]


@pytest.mark.asvs("V1.3.11")
@pytest.mark.parametrize("address", INJECTED)
def test_registration_refuses_header_injection_in_the_address(
    client: FlaskClient, app: Flask, outbox: Outbox, address: str  # noqa: F811
) -> None:
    resp = post_form(client, "/auth/register", {
        "username": "mallory", "email": address,
        "password": "a long enough passphrase", "confirm": "a long enough passphrase"})
    assert 400 <= resp.status_code < 500
    assert "valid email" in resp.get_data(as_text=True) or "not allowed" in resp.get_data(as_text=True)
    assert user_count() == 0
    assert outbox.messages() == []


@pytest.mark.asvs("V1.3.11")
@pytest.mark.parametrize("address", INJECTED[:3])
def test_email_change_refuses_header_injection(
    client: FlaskClient, user: User, outbox: Outbox, address: str  # noqa: F811
) -> None:
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": address}, action="/account/email")
    assert resp.status_code == 422
    assert outbox.messages() == []
    db.session.refresh(user)
    assert user.email == "alice@example.org"


@pytest.mark.asvs("V1.3.11")
def test_the_mailer_itself_refuses_a_header_with_a_line_break(app: Flask) -> None:
    from bastion.mail import build_message

    with app.test_request_context(), pytest.raises(ValueError):
        build_message("a@example.org\r\nBcc: b@example.org", "Hi", "confirm", user=None,
                      url="https://localhost/x", hours=1).as_bytes()


# V2.2.3 ------------------------------------------------------------------------------
@pytest.mark.asvs("V2.2.3", "V2.1.2")
def test_registration_needs_matching_passwords(client: FlaskClient, app: Flask) -> None:
    resp = post_form(client, "/auth/register", {
        "username": "dora", "email": "dora@example.org",
        "password": "a long enough passphrase", "confirm": "a long enough passphrasE"})
    assert 400 <= resp.status_code < 500
    assert "do not match" in resp.get_data(as_text=True)
    assert user_count() == 0


@pytest.mark.asvs("V2.2.3", "V2.1.2")
def test_password_change_needs_matching_confirmation(client: FlaskClient, user: User) -> None:  # noqa: F811
    sign_in(client, "alice")
    before = user.password_hash
    resp = post_form(client, "/account", {"current": PASSWORD, "password": "brand new passphrase 9",
                                          "confirm": "brand new passphrase 8"},
                     action="/account/password")
    assert resp.status_code == 422
    assert "do not match" in resp.get_data(as_text=True)
    db.session.refresh(user)
    assert user.password_hash == before


@pytest.mark.asvs("V2.2.3", "V2.1.2")
def test_new_email_must_differ_from_the_current_one(
    client: FlaskClient, user: User, outbox: Outbox  # noqa: F811
) -> None:
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": "ALICE@example.org"}, action="/account/email")
    assert resp.status_code == 422
    assert "already your email" in resp.get_data(as_text=True)
    assert outbox.messages() == []


@pytest.mark.asvs("V2.2.3", "V2.1.2")
def test_password_may_not_contain_the_username(app: Flask) -> None:
    assert services.password_problem("zebra-crossing-99!", username="zebra") is not None


# V3.7.1 ------------------------------------------------------------------------------
@pytest.mark.asvs("V3.7.1")
def test_no_plugin_content_and_csp_forbids_it(client: FlaskClient) -> None:
    plugin = re.compile(r"<\s*(object|embed|applet)\b", re.I)
    for path in TEMPLATES.rglob("*.html"):
        assert not plugin.search(path.read_text(encoding="utf-8")), path
    csp = client.get("/").headers["Content-Security-Policy"]
    assert "object-src 'none'" in csp


# V3.2.2, V15.3.6 ---------------------------------------------------------------------
UNSAFE_SINKS = re.compile(
    r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML|document\.write|\beval\s*\(|"
    r"new\s+Function\s*\(|setTimeout\s*\(\s*['\"]|\.html\s*\("
)
POLLUTION = re.compile(
    r"__proto__|constructor\s*\.\s*prototype|\bObject\.assign\s*\(\s*\{\s*\}|"
    r"\w+\[\s*[a-zA-Z_$][\w$]*\s*\]\s*=(?!=)"
)


@pytest.mark.asvs("V3.2.2")
def test_static_scripts_insert_text_not_markup() -> None:
    assert STATIC_JS, "no JavaScript found; the scan would prove nothing"
    for path in STATIC_JS:
        source = path.read_text(encoding="utf-8")
        assert not UNSAFE_SINKS.search(source), path


@pytest.mark.asvs("V15.3.6")
def test_static_scripts_have_no_prototype_pollution_patterns() -> None:
    for path in STATIC_JS:
        source = path.read_text(encoding="utf-8")
        assert not POLLUTION.search(source), path


@pytest.mark.asvs("V15.3.6", "V3.2.2")
@pytest.mark.parametrize("snippet", [
    "out.innerHTML = value;", "target[key] = value;", "x.__proto__.polluted = 1;",
    "Object.assign({}, JSON.parse(body));", "el.insertAdjacentHTML('beforeend', s);",
])
def test_the_scans_catch_what_they_look_for(snippet: str) -> None:
    assert UNSAFE_SINKS.search(snippet) or POLLUTION.search(snippet)


# V2.2.1, V16.5.3: form fields are text parts only ------------------------------------
# Flask-WTF merged file parts and JSON bodies into every form, so a text field could hold a
# FileStorage, a number or an object, and WTForms' Length validator (``len``) raised: 500.
FILE_PART_POSTS = [
    ("anonymous", "/auth/login", {"username": "alice", "password": PASSWORD}, "username"),
    ("anonymous", "/auth/login", {"username": "alice", "password": PASSWORD}, "password"),
    ("anonymous", "/auth/register", {"username": "mallory", "email": "m@example.org",
                                     "password": "a long enough passphrase",
                                     "confirm": "a long enough passphrase"}, "email"),
    ("anonymous", "/auth/reset", {"email": "alice@example.org"}, "email"),
    ("viewer", "/account/password", {"current": PASSWORD, "password": "a long enough passphrase",
                                     "confirm": "a long enough passphrase"}, "current"),
    ("editor", "/articles/new", {"title": "A title", "body": "Some words."}, "title"),
]


def _stored_counts() -> tuple[int, ...]:
    from bastion.models import Article, Comment

    db.session.expire_all()
    return tuple(int(db.session.scalar(select(func.count()).select_from(model)) or 0)
                 for model in (User, Article, Comment))


@pytest.mark.asvs("V2.2.1", "V16.5.3")
@pytest.mark.parametrize(("role", "path", "data", "as_file"), FILE_PART_POSTS)
def test_a_text_field_sent_as_a_file_part_is_a_clear_4xx(
    app: Flask, role: str, path: str, data: dict[str, str], as_file: str
) -> None:
    import io

    from tests.support.roles import client_for, token

    UserFactory(username="alice", email="alice@example.org")
    client = client_for(app, None if role == "anonymous" else UserFactory(role_name=role))
    body: dict[str, object] = {"csrf_token": token(client), **data}
    body[as_file] = (io.BytesIO(data[as_file].encode()), "field.txt", "text/plain")
    before = _stored_counts()
    resp = client.post(path, data=body, content_type="multipart/form-data")
    assert resp.status_code == 422 or (path == "/auth/login" and resp.status_code == 200)
    assert "This field is required." in resp.get_data(as_text=True)
    assert _stored_counts() == before


@pytest.mark.asvs("V2.2.1", "V16.5.3")
@pytest.mark.parametrize("title", [1, 1.5, True, None, ["A title"], {"a": 1}, "A title"])
def test_a_json_body_is_not_form_input(app: Flask, title: object) -> None:
    from tests.support.roles import client_for, token

    client = client_for(app, UserFactory(role_name="editor"))
    csrf = token(client)
    before = _stored_counts()
    resp = client.post("/articles/new", json={"title": title, "body": "Some words."},
                       headers={"X-CSRFToken": csrf})
    assert resp.status_code == 422
    assert "This field is required." in resp.get_data(as_text=True)
    assert _stored_counts() == before


def test_every_form_of_the_site_reads_requests_through_bastion_form(app: Flask) -> None:
    """A form deriving from FlaskForm directly would take file parts and JSON values into
    its text fields again (the 500s above)."""
    from flask_wtf import FlaskForm

    from bastion.form_input import BastionForm

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(sub) for sub in found))

    ours = {c for c in subclasses(FlaskForm) if c.__module__.startswith("bastion.")}
    assert len(ours) >= 20  # every module with forms was imported by create_app
    assert {c.__qualname__ for c in ours if not issubclass(c, BastionForm)} == set()
