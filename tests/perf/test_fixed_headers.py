"""Fixed headers added in one pass land exactly as Werkzeug's own setters would put them."""

from __future__ import annotations

import pytest
from flask import Flask, Response, request
from flask_talisman import Talisman
from werkzeug.datastructures import Headers

from bastion.extensions import talisman
from bastion.security.fixed_headers import FixedHeaders, add_vary
from bastion.security.headers import STATIC_HEADERS, add_security_headers

PAIRS = [("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"), ("X-A", "1")]
STARTS = [
    [],
    [("Content-Type", "text/html")],
    [("x-frame-options", "SAMEORIGIN"), ("Content-Type", "text/html")],  # another case
    [("Referrer-Policy", "origin"), ("ETag", '"e"'), ("REFERRER-POLICY", "unsafe-url")],
    [("X-A", "0"), ("X-Frame-Options", "ALLOW"), ("Referrer-Policy", "origin")],
]


@pytest.mark.parametrize("start", STARTS)
def test_replacing_matches_setitem(start: list[tuple[str, str]]) -> None:
    expected = Headers(start)
    for name, value in PAIRS:
        expected[name] = value
    fast = Headers(start)
    FixedHeaders(PAIRS, replace=True).apply(fast)
    assert list(fast.items()) == list(expected.items())


@pytest.mark.parametrize("start", STARTS)
def test_keeping_matches_setdefault(start: list[tuple[str, str]]) -> None:
    expected = Headers(start)
    for name, value in PAIRS:
        expected.setdefault(name, value)
    fast = Headers(start)
    present = FixedHeaders(PAIRS, replace=False).apply(fast)
    assert list(fast.items()) == list(expected.items())
    assert present == {name.lower() for name, _ in start}


def test_a_name_given_twice_is_refused_at_start_up() -> None:
    # Appending both would send two values where a setter sends one.
    with pytest.raises(ValueError, match="X-A"):
        FixedHeaders([("X-A", "1"), ("x-a", "2")], replace=True)


def test_a_value_with_a_line_break_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError):
        FixedHeaders([("X-A", "1\r\nSet-Cookie: a=b")], replace=True)


@pytest.mark.asvs("V3.4.1", "V3.4.4")
def test_talisman_overrides_a_view_header_as_stock_talisman_does(app: Flask) -> None:
    preset = [("x-frame-options", "SAMEORIGIN"), ("X-Content-Type-Options", "off"), ("X-Own", "1")]
    with app.test_request_context("/", headers={"X-Forwarded-Proto": "https"}):
        request.csp_nonce = "n0nce"  # type: ignore[attr-defined]
        stock = Response(headers=preset)
        Talisman._set_response_headers(talisman, stock)
        fast = talisman._set_response_headers(Response(headers=preset))
    assert sorted(fast.headers.items()) == sorted(stock.headers.items())  # order aside
    assert fast.headers["X-Frame-Options"] == "DENY"
    assert fast.headers["X-Own"] == "1"


def test_security_headers_keep_a_view_value_and_drop_server(app: Flask) -> None:
    with app.test_request_context("/"):
        response = Response(
            headers=[("Cross-Origin-Resource-Policy", "cross-origin"), ("Server", "x/1.0")]
        )
        add_security_headers(response)
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    for name, value in STATIC_HEADERS.items():
        if name != "Cross-Origin-Resource-Policy":
            assert response.headers[name] == value
    assert "Server" not in response.headers


VARY_STARTS = [
    [],
    [("Vary", "")],
    [("Vary", "Origin")],
    [("Vary", "origin, cookie")],
    [("Vary", "Origin,Cookie")],  # Werkzeug's own spacing is written back
    [("Vary", '"Origin", Accept')],
    [("Vary", "Accept"), ("vary", "Cookie")],  # two headers: the first is read, both replaced
    [("Content-Type", "text/html"), ("Vary", "Accept-Encoding, Origin")],
]


@pytest.mark.parametrize("start", VARY_STARTS)
@pytest.mark.parametrize("name", ["Cookie", "Origin", "Accept-Language", "odd name"])
def test_add_vary_matches_werkzeugs_vary_add(start: list[tuple[str, str]], name: str) -> None:
    expected = Response(headers=start)
    expected.vary.add(name)
    fast = Response(headers=start)
    add_vary(fast.headers, name)
    assert list(fast.headers.items()) == list(expected.headers.items())
