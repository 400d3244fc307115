"""Precomputed security headers are exactly what stock Flask-Talisman would send."""

from __future__ import annotations

import re

import pytest
from flask import Flask, Response, request
from flask_talisman import Talisman

from bastion.extensions import talisman


def _stock() -> dict[str, str]:
    fresh = Response()
    Talisman._set_response_headers(talisman, fresh)  # the library's own code path
    return dict(fresh.headers.items())


@pytest.mark.asvs("V3.4.1", "V3.4.3", "V3.4.4", "V3.4.5", "V3.4.6")
@pytest.mark.parametrize(
    ("headers", "nonce"),
    [
        ({"X-Forwarded-Proto": "https"}, "n0nce-abc"),
        ({"X-Forwarded-Proto": "https"}, None),  # refused before the nonce was made
        ({}, "x"),  # plain HTTP: no HSTS
    ],
)
def test_headers_match_stock_talisman(
    app: Flask, headers: dict[str, str], nonce: str | None
) -> None:
    with app.test_request_context("/", headers=headers):
        if nonce is not None:
            request.csp_nonce = nonce  # type: ignore[attr-defined]
        fast = talisman._set_response_headers(Response())
        assert "Content-Security-Policy" in fast.headers
        assert dict(fast.headers.items()) == _stock()
        assert len(fast.headers) == len(_stock())
        if nonce is not None:
            assert f"'nonce-{nonce}'" in fast.headers["Content-Security-Policy"]


@pytest.mark.asvs("V3.4.3")
def test_every_response_gets_its_own_unguessable_nonce(client) -> None:  # type: ignore[no-untyped-def]
    nonces = []
    for _ in range(20):
        csp = client.get("/").headers["Content-Security-Policy"]
        found = re.findall(r"'nonce-([^']+)'", csp)
        assert len(found) == 2  # script-src and style-src
        assert found[0] == found[1]
        nonces.append(found[0])
    assert len(set(nonces)) == 20
    assert all(len(n) == 32 for n in nonces)
