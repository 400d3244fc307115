"""Limits still count on every request; their headers appear on 429 answers only."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.extensions import limiter
from bastion.security.access import public


@pytest.mark.asvs("V2.4.1")
def test_throttled_answer_says_when_to_retry(make_app) -> None:  # type: ignore[no-untyped-def]
    client = make_app().test_client()
    statuses = [client.post("/csp-report", json={"csp-report": {}}).status_code for _ in range(61)]
    assert statuses[:60] == [204] * 60
    assert statuses[-1] == 429
    resp = client.post("/csp-report", json={"csp-report": {}})
    assert resp.status_code == 429
    # At most the window (Flask-Limiter rounds its reset time up by a second).
    assert 1 <= int(resp.headers["Retry-After"]) <= 61
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert resp.headers["X-RateLimit-Limit"] == "60"


def _app_with_api_ping(make_app) -> Any:  # type: ignore[no-untyped-def]
    app = make_app()

    @public
    def ping() -> dict[str, bool]:
        return {"ok": True}

    app.add_url_rule("/api/v1/ping-for-test", "ping_for_test", ping)
    return app


@pytest.mark.parametrize("path", ["/", "/api/v1/ping-for-test"])
def test_answers_are_counted_without_reading_the_window_back(make_app, monkeypatch, path: str) -> None:  # type: ignore[no-untyped-def]
    client = _app_with_api_ping(make_app).test_client()
    reads: list[Any] = []
    original = limiter.limiter.get_window_stats

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(limiter.limiter, "get_window_stats", counting)
    ok = client.get(path)
    assert ok.status_code == 200
    assert "X-RateLimit-Limit" not in ok.headers
    assert reads == []  # one storage call per request (the hit), not two


@pytest.mark.asvs("V2.4.1")
def test_throttled_api_answer_carries_the_budget_and_when_to_retry(make_app) -> None:  # type: ignore[no-untyped-def]
    client = _app_with_api_ping(make_app).test_client()
    statuses = [client.get("/api/v1/ping-for-test").status_code for _ in range(301)]
    assert statuses[:300] == [200] * 300
    resp = client.get("/api/v1/ping-for-test")
    assert resp.status_code == 429
    assert resp.headers["X-RateLimit-Limit"] == "300"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(resp.headers["Retry-After"]) <= 61


def test_a_429_of_the_apps_own_keeps_its_retry_after(make_app) -> None:  # type: ignore[no-untyped-def]
    from flask import Response

    app = make_app()

    @public
    def locked() -> Response:
        return Response("locked", status=429, headers={"Retry-After": "900"})

    app.add_url_rule("/api/v1/locked-for-test", "locked_for_test", locked)
    resp = app.test_client().get("/api/v1/locked-for-test")
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "900"
    assert resp.headers["X-RateLimit-Limit"] == "300"
