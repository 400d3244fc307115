"""The session cookie interface: no signer for cookieless requests, Flask's checks otherwise."""

from __future__ import annotations

import pytest
from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface

from bastion.security.session_cookie import CookieFirstSessionInterface

COOKIE = "__Host-session"


def _app(secret: str | None = "k" * 48) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret
    app.config["SESSION_COOKIE_NAME"] = COOKIE
    app.session_interface = CookieFirstSessionInterface()

    @app.get("/set")
    def set_value() -> str:
        session["who"] = "alice"
        return "set"

    @app.get("/get")
    def get_value() -> str:
        return str(session.get("who"))

    return app


def test_bastion_uses_it(app: Flask) -> None:
    assert isinstance(app.session_interface, CookieFirstSessionInterface)


def test_a_request_without_the_cookie_gets_an_empty_session_and_builds_no_signer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _app()

    def no_signer(*_args: object) -> None:
        raise AssertionError("a signer was built for a request without a session cookie")

    monkeypatch.setattr(SecureCookieSessionInterface, "get_signing_serializer", no_signer)
    resp = app.test_client().get("/get", headers={"Cookie": "other=1"})
    assert resp.status_code == 200 and resp.data == b"None"
    assert "Set-Cookie" not in resp.headers


@pytest.mark.asvs("V3.3.1")
def test_a_signed_cookie_is_read_and_a_tampered_one_is_ignored() -> None:
    app = _app()
    client = app.test_client()
    client.get("/set")
    assert client.get("/get").data == b"alice"
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    forged = _app().test_client()
    signature_changed = cookie.value[:-2] + ("BB" if cookie.value.endswith("AA") else "AA")
    forged.set_cookie(COOKIE, signature_changed)
    assert forged.get("/get").data == b"None"
    # The same bytes under another key are refused as well.
    other = _app(secret="z" * 48).test_client()
    other.set_cookie(COOKIE, cookie.value)
    assert other.get("/get").data == b"None"


def test_without_a_secret_key_the_session_is_unavailable_as_in_flask() -> None:
    app = _app(secret=None)
    app.testing = True
    with pytest.raises(RuntimeError, match="secret key"):
        app.test_client().get("/set")


@pytest.mark.parametrize(
    "header",
    [
        f"{COOKIE}={'x' * 60_000}",  # far beyond what a browser keeps
        f"{COOKIE}=.{'A' * 5000}.abc.def",  # claims a compressed payload, signed by no one
        f"{COOKIE}=a.b.c",
        f'{COOKIE}="\\377\\000;"',  # quoted, with escapes that decode to bytes
        f"{COOKIE}=",
        f"{COOKIE}=a; {COOKIE}=b; " + "k=v; " * 2000,  # one name twice, thousands of others
        "\x00\xff=;;;==" * 50,
    ],
    ids=["huge", "fake-compressed", "dots", "quoted-escapes", "empty", "many", "junk"],
)
@pytest.mark.asvs("V3.3.1")
def test_a_malformed_session_cookie_is_a_visitor_without_one_never_an_error(
    app: Flask, header: str
) -> None:
    """Nothing in the cookie is trusted before its signature: a broken one is ignored,
    and the pages that read the session answer as they do for a visitor."""
    client = app.test_client()
    for path, signed_out in [
        ("/", 200),
        ("/auth/login", 200),
        ("/account", 302),
        ("/auth/2fa", 302),
    ]:
        resp = client.get(path, headers={"Cookie": header})
        assert resp.status_code == signed_out, (path, resp.status_code)
