"""CSRF: a state-changing POST without a valid token, or from another site, changes nothing."""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import Article, AuditEvent, Comment
from tests.factories import ArticleFactory, UserFactory
from tests.support.queries import row_count
from tests.support.roles import client_for, token


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("csrf", [None, "", "forged-token", "IjAwIg.aaaa.bbbb"])
def test_post_without_a_valid_token_is_refused(app: Flask, csrf: str | None) -> None:
    article = ArticleFactory()
    client = client_for(app, article.author)
    data = (
        {"title": "x", "body": "y"}
        if csrf is None
        else {"title": "x", "body": "y", "csrf_token": csrf}
    )
    resp = client.post("/articles/new", data=data)
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert "sent from another site" in page
    # Headed in words a person reads first, not the status's "Bad Request".
    assert "<h1>This form has expired</h1>" in page and "Bad Request" not in page
    resp = client.post(
        f"/articles/{article.id}/delete", data={} if csrf is None else {"csrf_token": csrf}
    )
    assert resp.status_code == 400
    assert row_count(Article) == 1
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.event == "csrf.failure"))


@pytest.mark.asvs("V3.5.1", "V3.5.3")
def test_token_of_another_session_or_cross_site_referer_is_refused(app: Flask) -> None:
    article = ArticleFactory()
    victim = client_for(app, UserFactory())
    attacker = client_for(app, UserFactory())
    stolen = token(attacker)
    resp = victim.post(f"/articles/{article.id}/comments", data={"body": "x", "csrf_token": stolen})
    assert resp.status_code == 400
    # A real token, but the request comes from another site (HTTPS Referer check).
    resp = victim.post(
        f"/articles/{article.id}/comments",
        data={"body": "x", "csrf_token": token(victim)},
        headers={"Referer": "https://evil.test/attack"},
    )
    assert resp.status_code == 400
    assert row_count(Comment) == 0


@pytest.mark.asvs("V3.5.3")
@pytest.mark.parametrize(
    "how",
    [
        {},
        # A GET cannot be turned into a POST by the overrides some frameworks honour.
        {"headers": {"X-HTTP-Method-Override": "POST"}},
        {"headers": {"X-Method-Override": "POST"}},
        {"headers": {"X-HTTP-Method": "POST"}},
        {"query_string": {"_method": "POST"}},
    ],
    ids=["plain", "x-http-method-override", "x-method-override", "x-http-method", "_method"],
)
def test_get_never_changes_state(app: Flask, how: dict[str, object]) -> None:
    article = ArticleFactory()
    client = client_for(app, article.author)
    for path in (
        f"/articles/{article.id}/delete",
        "/comments/1/delete",
        f"/admin/users/{article.author_id}/disable",
        "/auth/logout",
    ):
        assert client.get(path, **how).status_code == 405, path  # type: ignore[arg-type]
    assert row_count(Article) == 1
    assert client.get("/account").status_code == 200  # still signed in
