"""Bad input is a problem+json 4xx, never a 500, and never stores anything."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import Article, User
from tests.api.conftest import Api
from tests.factories import PASSWORD


@pytest.fixture
def editor_token(api: Api, make_user: Callable[..., User]) -> str:
    return api.access_for(make_user("editor"))


@pytest.mark.asvs("V2.2.1", "V4.1.1", "V15.3.5", "V16.5.3")
@pytest.mark.parametrize(
    ("data", "ctype", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"", "application/json", 400),
        (b"\xff\xfe\x00", "application/json", 400),
        (b'{"title": "T", "body": "B"}', "text/plain", 415),
        (b"title=T&body=B", "application/x-www-form-urlencoded", 415),
        (b'{"title": "T", "body": "B"}', "", 415),
        (b"[]", "application/json", 422),
        (b'"string"', "application/json", 422),
        (b"null", "application/json", 422),
        (b'{"title": 5, "body": "B"}', "application/json", 422),
        (b'{"title": "T", "body": ["B"]}', "application/json", 422),
        (b'{"title": "T", "body": "B", "publish": "yes"}', "application/json", 422),
        (b'{"title": "T", "body": "B", "publish": 1}', "application/json", 422),
        (b'{"title": "", "body": "B"}', "application/json", 422),
        (b'{"title": "T\\u0000", "body": "B"}', "application/json", 422),
        (b'{"title": "T", "body": "B", "title": {"a": 1}}', "application/json", 422),
        (b'{"title": "T", "body": "' + b"x" * 100_001 + b'"}', "application/json", 422),
    ],
)
def test_malformed_bodies_are_clear_4xx(
    api: Api, editor_token: str, data: bytes, ctype: str, status: int
) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    resp = api.call("POST", "/articles", editor_token, data=data, headers=headers)
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["status"] == status
    assert db.session.query(Article).count() == 0


@pytest.mark.asvs("V15.3.7", "V16.5.3")
@pytest.mark.parametrize(
    "data",
    [
        b'{"title": "Shown", "body": "B", "title": "Stored"}',
        b'{"title": {"a": 1}, "title": "T", "body": "B"}',
        b'{"title": "T", "body": "B", "\\u0074itle": "T2"}',
    ],
)
def test_a_field_named_twice_is_refused(api: Api, editor_token: str, data: bytes) -> None:
    """Parsers disagree on which of two equal keys wins: neither is acted on."""
    resp = api.call("POST", "/articles", editor_token, data=data, content_type="application/json")
    assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/problem+json"
    assert "more than once" in resp.get_json()["detail"]
    assert db.session.query(Article).count() == 0


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize(
    ("coding", "data"),
    [
        ("gzip", b'{"title": "T", "body": "B"}'),  # says compressed, is not: was a 201
        ("gzip", gzip.compress(b'{"title": "T", "body": "B"}', mtime=0)),  # was "not valid JSON"
        ("deflate, gzip", b'{"title": "T", "body": "B"}'),
        ("br", b'{"title": "T", "body": "B"}'),
    ],
    ids=["claimed-gzip", "real-gzip", "codings-list", "br"],
)
def test_a_content_encoded_body_is_refused_with_415(
    api: Api, editor_token: str, coding: str, data: bytes
) -> None:
    """The API reads bodies as sent; one that names a content coding is not acted on, or a
    proxy that decodes it would see another request than the one the server acted on."""
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    resp = api.call("POST", "/articles", editor_token, data=data, headers=headers)
    assert resp.status_code == 415, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/problem+json"
    assert "Content-Encoding" in resp.get_json()["detail"]
    assert resp.headers["Accept-Encoding"] == "identity"
    assert db.session.query(Article).count() == 0


def test_an_identity_content_encoding_is_accepted(api: Api, editor_token: str) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "Identity"}
    data = b'{"title": "T", "body": "B"}'
    resp = api.call("POST", "/articles", editor_token, data=data, headers=headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)[:300]


@pytest.mark.asvs("V15.3.7")
def test_a_sign_in_naming_the_user_twice_is_refused(
    api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user()
    data = (
        f'{{"username": "nobody", "password": "x", '
        f'"username": "{user.username}", "password": "{PASSWORD}"}}'
    ).encode()
    resp = api.call("POST", "/auth/token", data=data, content_type="application/json")
    assert resp.status_code == 400
    assert "more than once" in resp.get_json()["detail"]


@pytest.mark.asvs("V16.5.1")
def test_field_errors_do_not_echo_values(api: Api, editor_token: str) -> None:
    resp = api.call(
        "POST",
        "/tokens",
        editor_token,
        json={"name": "x", "scopes": ["root"], "password": "hunter2-secret"},
    )
    assert resp.status_code == 422
    assert "hunter2-secret" not in resp.get_data(as_text=True)
    assert resp.get_json()["errors"][0]["loc"] == ["scopes", 0]


def test_huge_body_is_413_naming_the_limit(app: Flask, api: Api, editor_token: str) -> None:
    data = b'{"title": "T", "body": "' + b"x" * (1100 * 1024) + b'"}'
    resp = api.call("POST", "/articles", editor_token, data=data, content_type="application/json")
    assert resp.status_code == 413
    assert resp.mimetype == "application/problem+json"
    # "What was sent is too large." left a client to find the limit by trial and error.
    assert f"{app.config['API_MAX_BODY_BYTES']} bytes" in resp.get_json()["detail"]
    assert db.session.query(Article).count() == 0


CHUNKED = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}


@pytest.mark.asvs("V4.2.1", "V2.2.1")
def test_a_chunked_body_over_the_limit_is_413_not_cut_short(
    app: Flask, api: Api, editor_token: str
) -> None:
    """Without Content-Length, Werkzeug stopped reading at the limit and returned the first
    part as the whole body: valid JSON on its own, it was stored (201) though the body sent
    was over the limit and not JSON at all."""
    limit = app.config["API_MAX_BODY_BYTES"]
    head = b'{"title": "T", "body": "B"}'
    padded = head + b" " * (limit - len(head))

    def send(data: bytes) -> Any:
        # What a server that dechunks the body itself (gunicorn, Werkzeug's) hands over.
        dechunked = {"wsgi.input_terminated": True}
        call = {"data": data, "headers": CHUNKED, "environ_overrides": dechunked}
        return api.call("POST", "/articles", editor_token, **call)

    for data in (padded + b"not JSON, past the limit", b'{"title": "T", "body": "' + b"x" * limit):
        resp = send(data)
        assert resp.status_code == 413, resp.get_data(as_text=True)[:300]
        assert resp.mimetype == "application/problem+json"
    assert db.session.query(Article).count() == 0
    resp = send(padded)  # exactly the limit is still fine
    assert resp.status_code == 201, resp.get_data(as_text=True)[:300]


@pytest.mark.asvs("V2.2.1")
def test_deeply_nested_json_is_refused(api: Api, editor_token: str) -> None:
    data = b'{"title": "T", "body": "B", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = api.call("POST", "/articles", editor_token, data=data, content_type="application/json")
    assert resp.status_code in (400, 413, 422)
    assert resp.mimetype == "application/problem+json"
    nested = b'{"title": "T", "body": "B", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    resp = api.call("POST", "/articles", editor_token, data=nested, content_type="application/json")
    assert resp.status_code in (400, 422)
    assert db.session.query(Article).count() == 0


@pytest.mark.asvs("V16.5.3")
@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer a b",
        "bst_x",
        "Bearer bst_" + "x" * 200,
        "Bearer " + "e" * 5000,
        "Token abc",
    ],
)
def test_malformed_authorization_is_401(api: Api, header: str) -> None:
    resp = api.call("GET", "/me", headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"


@pytest.mark.asvs("V4.1.1")
def test_unknown_route_and_method_are_problem_json(api: Api, editor_token: str) -> None:
    assert api.call("GET", "/nope", editor_token).mimetype == "application/problem+json"
    resp = api.call("PUT", "/me", editor_token, json={})
    assert resp.status_code == 405
    assert resp.mimetype == "application/problem+json"
    assert "Allow" in resp.headers


def test_huge_path_ids_are_404_not_500(api: Api, editor_token: str) -> None:
    resp = api.call("GET", f"/articles/{10**30}", editor_token)
    assert resp.status_code == 404
    resp = api.call("DELETE", f"/comments/{2**63}", editor_token)
    assert resp.status_code == 404


@pytest.mark.asvs("V2.4.1")
def test_api_rate_limit_answers_429_with_retry_after(make_app: Callable[..., Flask]) -> None:
    app = make_app(API_RATE_LIMIT="3 per minute")
    client = app.test_client()
    statuses = [client.get("/api/v1/me").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    resp = client.get("/api/v1/me")
    assert resp.mimetype == "application/problem+json"
    assert int(resp.headers["Retry-After"]) > 0


@pytest.mark.asvs("V2.2.1")
def test_nul_in_credentials_is_a_4xx_on_every_database(api: Api) -> None:
    # PostgreSQL refuses NUL in text: this was a 500 before the schema refused it.
    resp = api.call("POST", "/auth/token", json={"username": "a\u0000b", "password": "x" * 12})
    assert resp.status_code == 422
    from bastion.auth.services import authenticate

    assert authenticate("a\x00b", "x" * 12) is None


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("title", ["\u200b", "\u2060\ufeff\u3164", " \u200d "])
def test_a_title_that_draws_nothing_is_refused(api: Api, editor_token: str, title: str) -> None:
    resp = api.call("POST", "/articles", editor_token, json={"title": title, "body": "B"})
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["loc"][-1] == "title"
    resp = api.call("POST", "/articles", editor_token, json={"title": "T", "body": title})
    assert resp.status_code == 422
    assert db.session.query(Article).count() == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/articles", {"title": "\u202eexe.jpg", "body": "B"}, "title"),
        ("POST", "/articles", {"title": "T", "body": "\x1b[2J"}, "body"),
        ("PATCH", "/me", {"display_name": "a\u200bb"}, "display_name"),
        ("PATCH", "/me", {"bio": "\x1b[31mred"}, "bio"),
        ("POST", "/tokens", {"name": " ", "scopes": ["articles:read"], "password": "x"}, "name"),
    ],
)
def test_a_refused_character_is_explained_in_words_not_as_a_regex(
    api: Api, editor_token: str, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    """pydantic's message for a pattern quotes the pattern: for a title, 400 characters of
    escapes and raw astral code points that say nothing to whoever sent it."""
    resp = api.call(method, path, editor_token, json=body)
    assert resp.status_code == 422, resp.get_data(as_text=True)[:300]
    [error] = resp.get_json()["errors"]
    assert error["loc"] == [field]
    assert error["type"] == "string_pattern_mismatch"
    assert "pattern" not in error["msg"]
    assert "\\u" not in error["msg"] and "\\x" not in error["msg"]
    assert len(error["msg"]) < 200


def test_every_pattern_in_the_document_has_words_for_it(api: Api) -> None:
    from bastion.api.schemas import PATTERN_MESSAGES

    def patterns(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
            return found.union(*(patterns(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(patterns(v) for v in node))
        return set()

    documented = patterns(api.call("GET", "/openapi.json").get_json())
    assert documented, "the document states its patterns"
    assert documented <= PATTERN_MESSAGES.keys()


@pytest.mark.asvs("V1.1.1", "V2.2.1")
@pytest.mark.parametrize(
    ("charset", "data"),
    [
        # The sender means "cafÃ©" (two Latin-1 characters); read as UTF-8 it was stored as
        # "café": another text than the one sent, and than a proxy honouring the label sees.
        ("iso-8859-1", '{"title": "cafÃ©", "body": "B"}'.encode("latin-1")),
        # Real UTF-16 was "not valid JSON", which sent the client looking at its JSON.
        ("utf-16", '{"title": "T", "body": "B"}'.encode("utf-16")),
        # ASCII labelled UTF-16: a proxy decoding it as labelled sees no JSON at all.
        ("UTF-16LE", b'{"title": "T", "body": "B"}'),
    ],
    ids=["latin-1", "utf-16", "ascii-labelled-utf-16"],
)
def test_a_body_labelled_with_another_charset_than_utf8_is_refused_with_415(
    api: Api, editor_token: str, charset: str, data: bytes
) -> None:
    """JSON is UTF-8 (RFC 8259); a body said to be in another charset is not read as if it
    were UTF-8, so what is acted on is what the client (and every hop) meant."""
    headers = {"Content-Type": f"application/json; charset={charset}"}
    resp = api.call("POST", "/articles", editor_token, data=data, headers=headers)
    assert resp.status_code == 415, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/problem+json"
    assert "UTF-8" in resp.get_json()["detail"]
    assert db.session.query(Article).count() == 0


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", '"utf-8"'])
def test_a_body_labelled_utf8_is_accepted(api: Api, editor_token: str, charset: str) -> None:
    headers = {"Content-Type": f"application/json; charset={charset}"}
    data = '{"title": "café", "body": "B"}'.encode()
    resp = api.call("POST", "/articles", editor_token, data=data, headers=headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)[:300]
    assert resp.get_json()["title"] == "café"
