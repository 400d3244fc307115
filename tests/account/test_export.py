"""A user downloads their own data from /account/export: everything that is theirs to take,
nothing that is a secret, nothing of anyone else's, and only when they asked for it."""

from __future__ import annotations

import html
import io
import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.api import pats
from bastion.api.tokens import issue_pair
from bastion.auth import twofactor
from bastion.extensions import db
from bastion.models import AuditEvent, RecoveryCode, RefreshToken, User, UserSession
from bastion.uploads import services as uploads
from tests.factories import PASSWORD, TOTP_SECRET, ArticleFactory, CommentFactory, UserFactory
from tests.support.accounts import post_form
from tests.support.roles import age_reauthentication, client_for
from tests.uploads import corpus

URL = "/account/export"
NEXT_RE = re.compile(r'<input[^>]*name="next"[^>]*>')
# What a browser sends for a click on the account page's link.
NAVIGATE = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document"}


def _events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def _author_with_everything(username: str) -> dict[str, Any]:
    """An editor with 2FA, recovery codes, an article, a comment, two images, a personal
    access token and an API token pair; returns them and every secret they hold."""
    user = UserFactory(username=username, role_name="editor", two_factor=True,
                       display_name=f"{username.title()} D.", bio=f"Bio of {username}")
    article = ArticleFactory(author=user, status="published", title=f"Title by {username}",
                             body_md=f"# Markdown by {username}")
    draft = ArticleFactory(author=user, status="draft", title=f"Draft by {username}")
    comment = CommentFactory(article=article, author=user, body=f"Comment by {username}")
    avatar = uploads.store_image(user, io.BytesIO(corpus.png()), kind="avatar")
    picture = uploads.store_image(user, io.BytesIO(corpus.png()), kind="article", article=article)
    pat = pats.create(user, name=f"{username}-laptop", scopes=["articles:read"])
    pair = issue_pair(user)
    codes = twofactor.regenerate(user)
    return {"user": user, "article": article, "draft": draft, "comment": comment,
            "avatar": avatar, "picture": picture, "pat": pat, "pair": pair, "codes": codes}


def _secrets(user: User, made: dict[str, Any], client: FlaskClient) -> list[str]:
    db.session.expire_all()
    stored = [
        user.password_hash, user.totp_secret, user.security_stamp,
        *db.session.scalars(select(UserSession.token_hash).where(UserSession.user_id == user.id)),
        *db.session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)),
        *db.session.scalars(select(RefreshToken.jti).where(RefreshToken.user_id == user.id)),
        made["pat"].record.token_hash,
    ]
    cookie = client.get_cookie(client.application.config["SESSION_COOKIE_NAME"])
    given = [PASSWORD, TOTP_SECRET, made["pat"].secret, made["pair"].access_token,
             made["pair"].refresh_token, *made["codes"], cookie.value if cookie else None]
    return [s for s in (*stored, *given) if s]


def _download(client: FlaskClient, **headers: str) -> Any:
    return client.get(URL, headers={**NAVIGATE, **headers})


# ------------------------------------------------------------------ contents ---
@pytest.mark.asvs("V14.2.4", "V8.2.3")
def test_the_document_holds_the_users_own_data(app: Flask) -> None:
    made = _author_with_everything("ada")
    user, article, comment = made["user"], made["article"], made["comment"]
    client = client_for(app, user)

    resp = _download(client, **{"User-Agent": "Export-Probe/1.0"})

    assert resp.status_code == 200 and resp.mimetype == "application/json"
    doc = json.loads(resp.data)
    assert doc["account"] == {
        "username": "ada", "email": user.email, "display_name": "Ada D.", "bio": "Bio of ada",
        "role": "editor", "created_at": doc["account"]["created_at"],
        "email_confirmed_at": doc["account"]["email_confirmed_at"],
        "last_sign_in_at": doc["account"]["last_sign_in_at"], "two_factor": True,
    }
    assert doc["account"]["created_at"].endswith("Z")  # as the API writes times
    by_title = {a["title"]: a for a in doc["articles"]}
    assert set(by_title) == {"Title by ada", "Draft by ada"}  # drafts are theirs too
    published = by_title["Title by ada"]
    assert published["id"] == article.id and published["body"] == "# Markdown by ada"
    assert published["status"] == "published"
    assert published["url"].endswith(f"/articles/{article.id}")
    assert published["created_at"] and published["updated_at"] and published["published_at"]
    assert doc["comments"] == [{
        "id": comment.id, "article_id": article.id, "body": "Comment by ada",
        "created_at": doc["comments"][0]["created_at"], "edited_at": None,
    }]
    assert {(u["id"], u["kind"], u["article_id"]) for u in doc["uploads"]} == {
        (made["avatar"].id, "avatar", None), (made["picture"].id, "article", article.id)}
    stored = {made["avatar"].id: made["avatar"], made["picture"].id: made["picture"]}
    for upload in doc["uploads"]:
        row = stored[upload["id"]]
        assert (upload["content_type"], upload["size"]) == (row.content_type, row.size)
        assert upload["url"].endswith(f"/uploads/{upload['id']}")
    assert doc["sessions"] and all(set(s) == {"created_at", "last_seen_at", "expires_at",
                                              "revoked_at", "ip", "user_agent"}
                                   for s in doc["sessions"])
    (token,) = doc["personal_access_tokens"]
    assert token["name"] == "ada-laptop" and token["scopes"] == ["articles:read"]
    assert token["revoked_at"] is None and token["last_used_at"] is None
    assert token["expires_at"] and token["created_at"]


@pytest.mark.asvs("V14.1.2", "V14.2.4", "V8.2.3")
def test_no_secret_is_anywhere_in_the_document(app: Flask) -> None:
    made = _author_with_everything("ada")
    client = client_for(app, made["user"])
    raw = _download(client).data
    assert b'"username": "ada"' in raw  # the document is there to search
    secrets = _secrets(made["user"], made, client)
    assert len(secrets) >= 12
    for secret in secrets:
        assert secret.encode() not in raw, secret[:12]
    for key in (b"password", b"totp", b"hash", b"secret", b"recovery", b"stamp", b'"token"'):
        assert key not in raw.lower(), key


@pytest.mark.asvs("V8.2.2", "V8.3.1")
def test_another_users_data_is_never_included(app: Flask) -> None:
    """No id in the URL: the account is the session's; a user_id in the query changes nothing."""
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == "account.export_data")
    assert not rule.arguments
    other = _author_with_everything("bob")
    other_client = client_for(app, other["user"])
    mallory = UserFactory(username="mallory")
    CommentFactory(article=other["article"], author=mallory, body="Mallory was here")

    resp = client_for(app, mallory).get(f"{URL}?user_id={other['user'].id}&username=bob",
                                        headers=NAVIGATE)

    assert resp.status_code == 200
    doc = json.loads(resp.data)
    assert doc["account"]["username"] == "mallory"
    assert [c["body"] for c in doc["comments"]] == ["Mallory was here"]
    assert doc["articles"] == [] and doc["uploads"] == [] and doc["personal_access_tokens"] == []
    raw = resp.data
    for text in ("bob", other["user"].email, "Title by bob", "Comment by bob", other["avatar"].id,
                 *_secrets(other["user"], other, other_client)):
        assert text.encode() not in raw, text[:12]


# ------------------------------------------------------------ the way in ---
@pytest.mark.asvs("V14.3.2", "V14.2.2")
def test_the_download_is_an_attachment_never_stored_or_sniffed(app: Flask) -> None:
    user = UserFactory(username="ada")
    resp = _download(client_for(app, user))
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="bastion-ada-')
    assert disposition.endswith('.json"')
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.asvs("V16.3.3", "V14.2.4")
def test_each_export_is_audited_as_a_bulk_read_of_personal_data(app: Flask) -> None:
    made = _author_with_everything("ada")
    user_id = made["user"].id
    assert _download(client_for(app, made["user"]), **{"User-Agent": "probe/2"}).status_code == 200
    (event_,) = _events("account.exported")
    assert (event_.actor_id, event_.target_user_id) == (user_id, user_id)
    assert event_.details == {"articles": 2, "comments": 1, "uploads": 2}
    assert event_.ip and event_.request_id and event_.user_agent == "probe/2"


def test_a_head_request_exports_nothing(app: Flask) -> None:
    client = client_for(app, UserFactory())
    for _ in range(6):  # more than the allowance: a HEAD sends nothing, so spends nothing
        resp = client.head(URL, headers=NAVIGATE)
        assert resp.status_code == 200 and not resp.data
    assert not _events("account.exported")
    assert _download(client).status_code == 200


READY = "/account?export=ready#your-data"


def _next_on(page: str) -> str:
    tag = NEXT_RE.search(page)
    assert tag is not None
    value = re.search(r'value="([^"]*)"', tag.group(0))
    return html.unescape(value.group(1)) if value else ""


@pytest.mark.asvs("V7.5.1")
def test_the_export_needs_a_fresh_reauthentication(app: Flask) -> None:
    user = UserFactory()
    client = client_for(app, user)
    age_reauthentication(user, minutes=11)
    resp = _download(client)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth?next=")
    assert not resp.headers.get("Content-Disposition") and not _events("account.exported")


def test_after_reauthentication_the_account_page_offers_the_download(app: Flask) -> None:
    """Sent back to the download, the browser would save the file and stay on the password
    form; it lands on the account page's "Your data" section instead, which says what next."""
    user = UserFactory()
    client = client_for(app, user)
    age_reauthentication(user, minutes=11)
    stale = client.get("/account?export=ready").get_data(as_text=True)
    assert "Confirmed." not in stale  # the query alone confirms nothing

    reauth = _download(client).headers["Location"]
    nxt = _next_on(client.get(reauth).get_data(as_text=True))
    assert nxt == URL  # the page says what the password is for; it leads to READY
    done = post_form(client, "/auth/reauth", {"password": PASSWORD, "next": nxt})

    assert done.status_code == 302 and done.headers["Location"] == READY
    assert not _events("account.exported")  # nothing downloaded behind the user's back
    page = client.get(READY).get_data(as_text=True)
    assert 'id="your-data"' in page
    assert "Confirmed. Choose Download your data to get the file." in page
    assert "Confirmed." not in client.get("/account").get_data(as_text=True)
    assert _download(client).status_code == 200  # now fresh: the link downloads


def test_signed_out_visitors_are_sent_to_sign_in(app: Flask) -> None:
    resp = app.test_client().get(URL, headers=NAVIGATE)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/login")
    assert not _events("account.exported")


@pytest.mark.asvs("V3.5.3", "V16.3.3")
@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
    {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
    {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
    {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"},
])
def test_a_fetch_the_user_did_not_ask_for_exports_nothing(
    app: Flask, headers: dict[str, str]
) -> None:
    """A GET that writes: an <img>, a script's fetch, a frame or another site's link is
    refused (and audited), and does not spend the user's allowance."""
    user = UserFactory()
    client = client_for(app, user)
    resp = client.get(URL, headers=headers)
    assert resp.status_code == 403 and not resp.headers.get("Content-Disposition")
    assert b"Download your data" in resp.data
    assert not _events("account.exported")
    (refused,) = _events("account.export_refused")
    assert refused.target_user_id == user.id
    for _ in range(5):  # the whole allowance is still there
        assert _download(client).status_code == 200


@pytest.mark.parametrize("headers", [
    NAVIGATE,
    {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "empty"},
    {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
    {},  # curl, a script
])
def test_a_link_a_download_or_a_typed_address_exports(app: Flask, headers: dict[str, str]) -> None:
    assert client_for(app, UserFactory()).get(URL, headers=headers).status_code == 200


@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_exports_are_rate_limited(app: Flask) -> None:
    client = client_for(app, UserFactory())
    for _ in range(5):
        assert _download(client).status_code == 200
    resp = _download(client)
    assert resp.status_code == 429 and resp.headers.get("Retry-After")
    assert len(_events("account.exported")) == 5


# ----------------------------------------------------------------- the links ---
def test_the_account_and_delete_pages_offer_the_download(app: Flask) -> None:
    client = client_for(app, UserFactory())
    account = client.get("/account").get_data(as_text=True)
    assert "Your data" in account and f'href="{URL}"' in account
    delete = client.get("/account/delete").get_data(as_text=True)
    assert "Download your data first" in delete and f'href="{URL}"' in delete


@pytest.mark.asvs("V16.3.3")
def test_a_page_full_of_export_images_writes_one_audit_row_a_minute(app: Flask) -> None:
    """The refusal is logged each time but audited once a minute per account: a page holding
    many images that point at a GET that writes must not fill the undeletable trail."""
    user = UserFactory()
    client = client_for(app, user)
    image = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
             "Sec-Fetch-Dest": "image"}
    assert [client.get(URL, headers=image).status_code for _ in range(20)] == [403] * 20
    assert len(_events("account.export_refused")) == 1
    assert not _events("account.exported")
