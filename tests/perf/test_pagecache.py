"""Anonymous page reuse and conditional GET: faster, and never wrong or shared."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from werkzeug.http import generate_etag

from bastion import pagecache
from bastion.extensions import db
from tests.factories import PASSWORD, ArticleFactory, UserFactory
from tests.support.auth import AuthActions


def _nonce(csp: str) -> str:
    match = re.search(r"'nonce-([^']+)'", csp)
    assert match
    return match.group(1)


def test_anonymous_home_page_has_an_etag_and_answers_304_when_unchanged(client) -> None:  # type: ignore[no-untyped-def]
    first = client.get("/")
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    assert "Cookie" in first.headers["Vary"]
    again = client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    # Security headers are still set on the short answer, with a nonce of its own.
    assert _nonce(again.headers["Content-Security-Policy"]) != _nonce(
        first.headers["Content-Security-Policy"]
    )


def test_etag_changes_when_the_page_changes(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    etag = client.get("/").headers["ETag"]
    ArticleFactory(title="Fresh news")
    resp = client.get("/", headers={"If-None-Match": etag})
    assert resp.status_code == 200
    assert "Fresh news" in resp.get_data(as_text=True)
    assert resp.headers["ETag"] != etag
    assert resp.headers["ETag"] == f'"{generate_etag(resp.data)}"'


@pytest.mark.asvs("V14.2.2", "V14.3.2")
def test_signed_in_pages_get_neither_etag_nor_cached_body(
    app: Flask, client, auth: AuthActions
) -> None:  # type: ignore[no-untyped-def]
    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    try:
        client.get("/")  # store the anonymous page
        user = UserFactory(display_name="Mallory Reader")
        auth.login(user.username, PASSWORD)
        resp = client.get("/")
        assert "ETag" not in resp.headers
        assert resp.headers["Cache-Control"] == "no-store"
        assert "Sign out" in resp.get_data(as_text=True)  # rendered for this user
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


def test_stored_page_is_reused_only_within_its_lifetime(app: Flask, client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 5
    clock = [1000.0]
    monkeypatch.setattr(pagecache.time, "monotonic", lambda: clock[0])
    try:
        client.get("/")
        ArticleFactory(title="Later article")
        assert "Later article" not in client.get("/").get_data(as_text=True)
        clock[0] += 6
        assert "Later article" in client.get("/").get_data(as_text=True)
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


@pytest.mark.asvs("V14.2.2")
def test_pending_flash_message_bypasses_the_stored_page(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    try:
        client.get("/")
        with client.session_transaction() as sess:
            sess["_flashes"] = [("info", "You are signed out.")]
        resp = client.get("/")
        assert "You are signed out." in resp.get_data(as_text=True)
        assert "ETag" not in resp.headers
        # Shown once, and not to the next visitor of the stored page either.
        assert "You are signed out." not in client.get("/").get_data(as_text=True)
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


@pytest.mark.asvs("V14.2.2")
@pytest.mark.parametrize("session_had_token", [False, True])
def test_page_with_a_csrf_token_is_never_stored(app: Flask, session_had_token: bool) -> None:
    from flask import g, render_template_string, session

    calls = []

    @pagecache.cached_public_page
    def with_token() -> str:
        calls.append(1)
        return render_template_string("<input value='{{ csrf_token() }}'>")

    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    try:
        for _ in range(2):
            with app.test_request_context("/", base_url="https://localhost"):
                g.pop("csrf_token", None)
                if session_had_token:  # a visitor who opened a form before
                    session["csrf_token"] = "a" * 40
                    session.modified = False
                assert isinstance(with_token(), str)  # as is: no ETag, not stored
        assert len(calls) == 2
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


@pytest.mark.asvs("V14.2.2")
def test_page_with_the_csp_nonce_is_never_stored(app: Flask) -> None:
    from flask import g, render_template_string, request

    @pagecache.cached_public_page
    def with_nonce() -> str:
        return render_template_string("<script nonce='{{ csp_nonce() }}'></script>")

    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    try:
        with app.test_request_context("/", base_url="https://localhost"):
            g.pop("csrf_token", None)
            request.csp_nonce = "n0nce-for-this-request-only"  # type: ignore[attr-defined]
            assert isinstance(with_nonce(), str)
        assert len(app.extensions.get("bastion.page_cache") or ()) == 0
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


@pytest.mark.asvs("V14.2.2", "V3.5.1")
def test_article_page_is_stored_for_anonymous_readers_only(
    app: Flask, client, auth: AuthActions
) -> None:  # type: ignore[no-untyped-def]
    article = ArticleFactory(title="Read by many")
    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    try:
        first = client.get(f"/articles/{article.id}")
        assert first.status_code == 200 and "ETag" in first.headers
        assert "csrf_token" not in first.get_data(as_text=True)
        with client.session_transaction() as sess:
            assert "csrf_token" not in sess  # reading made nothing personal
        stored = app.extensions["bastion.page_cache"]
        assert len(stored) == 1
        # The ETag is hashed once when stored: it must be the hash of the bytes sent.
        plain = client.get(f"/articles/{article.id}")
        assert plain.data == first.data and plain.mimetype == "text/html"
        assert plain.headers["ETag"] == first.headers["ETag"] == f'"{generate_etag(first.data)}"'
        again = client.get(f"/articles/{article.id}", headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304
        # A signed-in reader gets the comment form, with a token of their own, never stored.
        reader = UserFactory()
        auth.login(reader.username, PASSWORD)
        page = client.get(f"/articles/{article.id}")
        assert "ETag" not in page.headers
        assert 'name="csrf_token"' in page.get_data(as_text=True)
        assert "Post comment" in page.get_data(as_text=True)
        assert len(stored) == 1
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


def test_an_expired_entry_is_renewed_by_one_caller_while_the_others_get_the_old_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(pagecache.time, "monotonic", lambda: clock[0])
    store = pagecache._Store()
    store.put(("k",), "v1", 2, ttl=5)
    assert store.get(("k",)) == "v1"
    clock[0] += 6  # expired
    assert store.get(("k",)) is None  # the first caller renews
    assert store.get(("k",)) == "v1"  # the others answer with the old copy meanwhile
    store.put(("k",), "v2", 2, ttl=5)
    assert store.get(("k",)) == "v2"
    # A renewal that never lands holds the others back for the grace period only.
    clock[0] += 6
    assert store.get(("k",)) is None
    clock[0] += pagecache.REFRESH_GRACE_SECONDS - 0.1
    assert store.get(("k",)) == "v2"
    clock[0] += 0.2
    assert store.get(("k",)) is None  # another caller tries
    # A renewal given up on (nothing to store) lets the next caller try at once, and the
    # old copy goes with it: no caller gets it during the next renewal either.
    store.release(("k",))
    assert store.get(("k",)) is None
    assert store.get(("k",)) is None
    assert len(store) == 0 and store.size == 0
    # A new value too big to keep also drops the old one: nobody gets that copy any more.
    store.put(("k",), "x" * 3, pagecache.ENTRY_MAX_BYTES + 1, ttl=5)
    assert store.get(("k",)) is None and len(store) == 0 and store.size == 0


def test_while_one_request_renders_a_page_anew_the_others_get_the_stored_one(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stampede: threads arriving during a slow render neither render nor wait for it."""
    import threading

    clock = [1000.0]
    monkeypatch.setattr(pagecache.time, "monotonic", lambda: clock[0])
    renders: list[int] = []
    rendering, finish = threading.Event(), threading.Event()

    @pagecache.cached_public_page
    def page() -> str:
        renders.append(1)
        if len(renders) == 2:  # the renewal: slow, and it fails the first time
            rendering.set()
            assert finish.wait(10)
            raise RuntimeError("database went away")
        return f"<p>version {len(renders)}</p>"

    def visit() -> bytes:
        with app.test_request_context("/", base_url="https://localhost"):
            return page().get_data()  # type: ignore[no-any-return]

    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 5
    errors: list[BaseException] = []

    def renew() -> None:
        try:
            visit()
        except RuntimeError as exc:
            errors.append(exc)

    try:
        assert visit() == b"<p>version 1</p>"
        clock[0] += 6
        worker = threading.Thread(target=renew)
        worker.start()
        assert rendering.wait(10)
        assert visit() == b"<p>version 1</p>"  # served the old copy, did not render
        assert len(renders) == 2
        finish.set()
        worker.join(10)
        assert errors and len(renders) == 2
        # The failed renewal let go at once: the next visitor renders the new version.
        assert visit() == b"<p>version 3</p>"
        assert visit() == b"<p>version 3</p>"
        assert len(renders) == 3
    finally:
        finish.set()
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


def test_a_failed_renewal_of_stored_bytes_lets_the_next_caller_try(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(pagecache.time, "monotonic", lambda: clock[0])
    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 5

    def broken() -> bytes:
        raise RuntimeError("database went away")

    try:
        assert pagecache.remember_tagged(("list",), lambda: b"one").data == b"one"
        clock[0] += 6
        with pytest.raises(RuntimeError):
            pagecache.remember_tagged(("list",), broken)
        assert pagecache.remember_tagged(("list",), lambda: b"two").data == b"two"
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


def test_a_deleted_article_is_not_served_during_later_renewals(  # type: ignore[no-untyped-def]
    app: Flask, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal of a deleted article ends in a 404. Had the old copy stayed, everyone
    arriving while the next renewal ran would get the deleted article, indefinitely."""
    clock = [1000.0]
    monkeypatch.setattr(pagecache.time, "monotonic", lambda: clock[0])
    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 5
    try:
        article = ArticleFactory(title="Withdrawn for legal reasons")
        url = f"/articles/{article.id}"
        assert client.get(url).status_code == 200
        db.session.delete(article)
        db.session.commit()
        clock[0] += 10_000
        store = app.extensions[pagecache._CACHE_KEY]
        key = ("content.show_article", url, "")
        assert client.get(url).status_code == 404  # the first renewal
        assert store.get(key) is None  # a second renewal starts (another thread's)...
        during = client.get(url)  # ...and a visitor arrives meanwhile
        assert during.status_code == 404
        assert b"Withdrawn for legal reasons" not in during.data
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


def test_a_profile_or_photo_change_is_seen_at_once_by_anonymous_readers(
    app: Flask, client, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    """The worker that saves a new name, bio or photo drops its stored pages: the owner
    who looks at once (often as an anonymous reader, in a private window) sees the change."""
    import io

    from bastion.profiles.services import update_profile
    from bastion.uploads.services import delete_upload, store_image
    from tests.uploads.corpus import png

    monkeypatch.setitem(app.config, "PUBLIC_PAGE_CACHE_SECONDS", 60)
    author = UserFactory(username="ada", display_name="Ada", role_name="editor")
    ArticleFactory(author=author, status="published")
    assert "Ada" in client.get("/u/ada").get_data(as_text=True)
    update_profile(author, display_name="Countess of Lovelace", bio="")
    assert "Countess of Lovelace" in client.get("/u/ada").get_data(as_text=True)
    assert "Countess of Lovelace" in client.get("/").get_data(as_text=True)  # the byline

    photo = store_image(author, io.BytesIO(png((80, 80))), kind="avatar")
    assert photo.id in client.get("/u/ada").get_data(as_text=True)
    delete_upload(author, photo)
    assert photo.id not in client.get("/u/ada").get_data(as_text=True)
