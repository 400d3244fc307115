"""Anonymous page reuse and conditional GET: faster, and never wrong or shared."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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
    clock[0] += 5
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


# --------------------------------------------------------------------------------------
# Adversarial review: what may be stored, for how long, and under which key.


@contextmanager
def _in_another_worker(app: Flask) -> Iterator[None]:
    """Run a change as another worker would: its ``pagecache.clear()`` empties the acting
    worker's store only, so this worker keeps the copies it stored before. Nor does this
    worker's next request see the objects the change loaded (the tests' requests share
    their session, and a row the database deleted by cascade would still be found there)."""
    kept = app.extensions[pagecache._CACHE_KEY]
    yield
    db.session.expunge_all()
    app.extensions[pagecache._CACHE_KEY] = kept


def _fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    clock = [1000.0]
    monkeypatch.setattr(pagecache.time, "monotonic", lambda: clock[0])
    return clock


def test_an_old_copy_is_never_served_past_its_lifetime_and_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old copy covers a renewal for REFRESH_GRACE_SECONDS after it expired, not after
    the renewal began: found long expired (nobody asked for it for a while), it used to go
    to everyone arriving while it was renewed, however old it was."""
    clock = _fake_clock(monkeypatch)
    grace = pagecache.REFRESH_GRACE_SECONDS
    store = pagecache._Store()
    store.put(("k",), "v1", 2, ttl=5)
    clock[0] += 3600
    assert store.get(("k",)) is None  # one caller renews...
    assert store.get(("k",)) is None  # ...and the others render too: never the old copy
    assert len(store) == 0 and store.size == 0
    # A renewal begun within the grace covers the others only until the grace ends.
    store.put(("k",), "v2", 2, ttl=5)
    clock[0] += 5 + grace / 4
    assert store.get(("k",)) is None
    assert store.get(("k",)) == "v2"
    clock[0] += grace * 3 / 4  # the renewal is still running; the copy is 5 s + grace old
    assert store.get(("k",)) is None


@pytest.mark.asvs("V14.2.2")
@pytest.mark.parametrize(
    ("claim_after", "visit_after"),
    [(0.5, pagecache.REFRESH_GRACE_SECONDS), (3600.0, 3600.0)],
    ids=["grace-ends-during-renewal", "after-a-quiet-spell"],
)
@pytest.mark.parametrize(
    "change", ["article deleted", "article unpublished", "author deleted", "author disabled"]
)
def test_a_withdrawn_page_is_served_by_no_worker_past_the_documented_window(
    app: Flask,
    client,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    change: str,
    claim_after: float,
    visit_after: float,
) -> None:
    """Another worker withdraws an article or profile; this one stored the page before.
    Its copy may be served for BASTION_PUBLIC_PAGE_CACHE_SECONDS and, while a request
    renews it, REFRESH_GRACE_SECONDS more (docs: 5 s + 2 s), then never again: not to a
    visitor who arrives while a renewal is still running, nor as a 304 to an old ETag."""
    from bastion.admin.deletion import delete_user
    from bastion.admin.services import set_disabled
    from bastion.content import services as content

    clock = _fake_clock(monkeypatch)
    monkeypatch.setitem(app.config, "PUBLIC_PAGE_CACHE_SECONDS", 5)
    pagecache.clear()
    request.addfinalizer(pagecache.clear)
    admin = UserFactory(role_name="admin")
    author = UserFactory(username="withdrawn", display_name="Withdrawn Author",
                         role_name="editor")
    article = ArticleFactory(author=author, status="published", title="Withdrawn for legal reasons")
    url = "/u/withdrawn" if change == "author disabled" else f"/articles/{article.id}"
    secret = b"Withdrawn Author" if change == "author disabled" else b"Withdrawn for legal"
    first = client.get(url)
    assert first.status_code == 200 and secret in first.data
    store = app.extensions[pagecache._CACHE_KEY]
    (key,) = store.entries
    with _in_another_worker(app):
        if change == "article deleted":
            content.delete_article(admin, article)
        elif change == "article unpublished":
            content.update_article(author, article, publish=False)
        elif change == "author deleted":
            delete_user(admin, author, confirmation="withdrawn")
        else:
            set_disabled(admin, author, True)
    clock[0] = 1004.9
    assert client.get(url).data == first.data  # the documented lag: this worker's copy
    clock[0] = 1005 + claim_after
    assert store.get(key) is None  # a request on another thread begins the renewal...
    clock[0] = 1005 + visit_after
    during = client.get(url, headers={"If-None-Match": first.headers["ETag"]})  # ...and one arrives
    assert during.status_code == 404
    assert secret not in during.data


def test_a_page_lives_its_seconds_from_when_its_rendering_began(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a page shows was read while it was rendered, so its lifetime counts from then:
    counted from when the slow render ended, a page read just before a deletion was served
    for the render's time more than the documented 5 s."""
    clock = _fake_clock(monkeypatch)
    renders: list[int] = []

    @pagecache.cached_public_page
    def slow_page() -> str:
        renders.append(1)
        clock[0] += 3  # reading and rendering take three seconds
        return f"<p>version {len(renders)}</p>"

    def visit() -> bytes:
        with app.test_request_context("/", base_url="https://localhost"):
            return slow_page().get_data()  # type: ignore[no-any-return]

    monkeypatch.setitem(app.config, "PUBLIC_PAGE_CACHE_SECONDS", 5)
    try:
        assert visit() == b"<p>version 1</p>"  # read at 1000, stored at 1003
        clock[0] = 1004.9
        assert visit() == b"<p>version 1</p>"
        clock[0] = 1005.0  # five seconds after it was read
        assert visit() == b"<p>version 2</p>"
        assert len(renders) == 2
        # The same for stored bytes (the API's list).
        pagecache.clear()
        clock[0] = 2000.0

        def slow_list() -> bytes:
            clock[0] += 3
            return f"list at {clock[0]}".encode()

        assert pagecache.remember_tagged(("list",), slow_list).data == b"list at 2003.0"
        clock[0] = 2005.0
        assert pagecache.remember_tagged(("list",), slow_list).data == b"list at 2008.0"
    finally:
        pagecache.clear()


# What a request may carry besides the address: none of it may change the page, since the
# stored copy is keyed on the endpoint, its arguments and the query string only.
_REQUEST_VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "other trusted host": {"headers": {"Host": "127.0.0.1"}},
    "host in capitals": {"headers": {"Host": "LOCALHOST"}},
    "host with port": {"headers": {"Host": "localhost:443"}},
    "forwarded as http": {"headers": {"X-Forwarded-Proto": "http"}},
    "forwarded host": {"headers": {"X-Forwarded-Host": "127.0.0.1", "X-Forwarded-Port": "8443"}},
    "forwarded prefix": {"headers": {"X-Forwarded-Prefix": "/evil"}},
    "forwarded for": {"headers": {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=1.2.3.4"}},
    "json wanted": {"headers": {"Accept": "application/json"}},
    "french": {"headers": {"Accept-Language": "fr-CH, fr;q=0.9"}},
    "compressed": {"headers": {"Accept-Encoding": "gzip, br"}},
    "odd agent": {"headers": {"User-Agent": "<script>alert(1)</script>"}},
    "referer": {"headers": {"Referer": "https://evil.example/?x=<b>"}},
    "bearer token": {"headers": {"Authorization": "Bearer not-a-token"}},
    "garbage cookie": {"headers": {"Cookie": "__Host-session=forged.value.sig"}},
    "head": {"method": "HEAD"},
}


@pytest.mark.asvs("V14.2.2", "V15.2.2")
def test_nothing_outside_the_cache_key_changes_a_stored_page(
    make_app: Callable[..., Flask],
) -> None:
    """Rendered afresh (no reuse) under every variant above, each page is the same bytes:
    so a copy stored under (endpoint, arguments, query) can be handed to all of them, and no
    Host, X-Forwarded-*, Accept-* or method an attacker sends can shape what others get.
    With reuse on, all the variants share one stored copy per page."""
    app = make_app(PROXY_HOPS=1, PUBLIC_PAGE_CACHE_SECONDS=0, RATELIMIT_ENABLED=False)
    with app.app_context():
        author = UserFactory(username="ada", display_name="Ada", role_name="editor")
        article = ArticleFactory(author=author, status="published", title="Read by many")
        db.session.commit()
        paths = ["/", f"/articles/{article.id}", "/u/ada", f"/articles/{article.id}?page=2"]
        author_id = author.id
    client = app.test_client()
    for path in paths:
        etags = {}
        for name, variant in _REQUEST_VARIANTS.items():
            resp = client.open(path, method=variant.get("method", "GET"),
                               base_url="https://localhost", headers=variant.get("headers"))
            if resp.status_code == 400 and name.startswith("host"):
                assert "ETag" not in resp.headers  # refused before the view: nothing stored
                continue
            assert resp.status_code == 200, (path, name)
            etags[name] = resp.headers["ETag"]
        assert set(etags.values()) == {etags["plain"]}, (path, etags)
        # An anonymous visitor with a session (a form's token, the step before the second
        # factor): the same page, kept from shared caches as their session's answers are.
        visitor = app.test_client()
        with visitor.session_transaction(base_url="https://localhost") as sess:
            sess["csrf_token"] = "a" * 40
            sess["pending_2fa"] = {"user": author_id}
        resp = visitor.get(path, base_url="https://localhost")
        assert resp.headers["ETag"] == etags["plain"], path
        assert resp.headers["Cache-Control"] == "no-store"
    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    fresh = {path: client.get(path, base_url="https://localhost").data for path in paths}
    for name, variant in _REQUEST_VARIANTS.items():
        if variant.get("method") == "HEAD":
            continue
        for path in paths:
            resp = client.open(path, base_url="https://localhost", headers=variant.get("headers"))
            if resp.status_code == 400 and name.startswith("host"):
                assert resp.data != fresh[path]  # refused, and not given the stored copy
                continue
            assert resp.data == fresh[path], (path, name)
            assert "Set-Cookie" not in resp.headers
    # Percent-encoded, the same address: the same copy, no second one.
    assert client.get("/u/%61da", base_url="https://localhost").data == fresh["/u/ada"]
    assert len(app.extensions[pagecache._CACHE_KEY]) == len(paths)


@pytest.mark.asvs("V14.2.2")
def test_only_the_views_page_is_stored_never_what_hooks_added_for_one_request(
    make_app: Callable[..., Flask],
) -> None:
    """Hooks that run after the view (security headers, or one that rewrites the body for
    one visitor) change that visitor's answer only: the next visitor gets the view's page
    as stored, with what the hooks make for them."""
    from flask import Response, request

    app = make_app(PUBLIC_PAGE_CACHE_SECONDS=60, RATELIMIT_ENABLED=False)

    @app.after_request
    def personalise(response: Response) -> Response:
        who = request.headers.get("X-Visitor")
        if who and response.mimetype == "text/html" and response.status_code == 200:
            response.set_data(response.get_data() + f"<!-- for {who} -->".encode())
            response.headers["X-Seen-By"] = who
        return response

    client = app.test_client()
    alice = client.get("/", headers={"X-Visitor": "alice"})
    assert alice.data.endswith(b"<!-- for alice -->")
    stored = app.extensions[pagecache._CACHE_KEY]
    ((_, page, _),) = stored.entries.values()
    assert b"alice" not in page.data
    bob = client.get("/", headers={"X-Visitor": "bob"})
    assert b"alice" not in bob.data and bob.data.endswith(b"<!-- for bob -->")
    assert bob.headers["X-Seen-By"] == "bob"


@pytest.mark.asvs("V14.2.2", "V8.2.2")
def test_what_a_signed_in_visitor_sees_never_reaches_the_next_anonymous_one(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed-in renders come first here, on an empty store: none may be stored, or the
    anonymous reader who follows would get an admin's controls and CSRF token, the
    author's draft or a name in the header."""
    from tests.support.roles import client_for

    monkeypatch.setitem(app.config, "PUBLIC_PAGE_CACHE_SECONDS", 60)
    pagecache.clear()
    try:
        admin = UserFactory(role_name="admin", display_name="Admiral Secret")
        author = UserFactory(role_name="editor", display_name="Author Private")
        published = ArticleFactory(author=author, status="published", title="Out there")
        draft = ArticleFactory(author=author, status="draft", published_at=None,
                               title="Unreleased draft")
        pages = ["/", f"/articles/{published.id}", f"/articles/{draft.id}"]
        for user in (admin, author):
            signed_in = client_for(app, user)
            for path in pages:
                assert signed_in.get(path).status_code == 200, path
        assert len(app.extensions.get(pagecache._CACHE_KEY) or ()) == 0
        anonymous = app.test_client()
        for path in pages[:2]:
            body = anonymous.get(path).get_data(as_text=True)
            for personal in ("csrf_token", "Sign out", "Admiral Secret", "/edit", "/delete",
                             "Unreleased draft", "nonce="):
                assert personal not in body, (path, personal)
        assert anonymous.get(f"/articles/{draft.id}").status_code == 404
        # The anonymous page's ETag never answers a signed-in visitor with a 304, which
        # would have their browser (or a cache) show them the anonymous copy.
        etag = anonymous.get("/").headers["ETag"]
        mine = client_for(app, author).get("/", headers={"If-None-Match": etag})
        assert mine.status_code == 200 and "Sign out" in mine.get_data(as_text=True)
    finally:
        pagecache.clear()


@pytest.mark.asvs("V14.2.2")
@pytest.mark.parametrize("touch", ["write", "flash", "pop"])
def test_a_render_that_touched_the_session_is_never_stored(app: Flask, touch: str) -> None:
    """Whatever the view put in or took out of the session (a flash, a value of the
    visitor's), the page it made may show it: answered to this visitor only."""
    from flask import flash, session

    @pagecache.cached_public_page
    def page() -> str:
        if touch == "write":
            session["seen"] = "visitor-7"
        elif touch == "flash":
            flash("Only for you")
        else:
            session.pop("anything", None)
            session.modified = True
        return "<p>the same words for all</p>"

    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    try:
        with app.test_request_context("/", base_url="https://localhost"):
            assert isinstance(page(), str)  # as is: no ETag, not stored
        assert len(app.extensions.get(pagecache._CACHE_KEY) or ()) == 0
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


def test_the_store_keeps_its_accounts_under_concurrent_use() -> None:
    """Many threads storing, reading, renewing and giving up on a few keys at once: the
    byte and entry counts still match what is stored, and stay within their bounds."""
    import random
    import sys
    import threading

    store = pagecache._Store()
    keys = [(f"k{n}",) for n in range(40)]
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(3000):
                key = rnd.choice(keys)
                action = rnd.random()
                if action < 0.5:
                    store.put(key, "x", rnd.randint(1, 4 * 1024 * 1024), ttl=rnd.choice((0, 5)),
                              varied=key[0] < "k2")
                elif action < 0.8:
                    store.get(key)
                else:
                    store.release(key)
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert store.size == sum(size for _, _, size in store.entries.values())
    assert store.varied <= store.entries.keys()
    assert store.varied_size == sum(store.entries[key][2] for key in store.varied)
    assert store.size <= pagecache.STORE_BUDGET_BYTES
    assert store.varied_size <= pagecache.STORE_BUDGET_BYTES // pagecache.VARIED_SHARE
    assert set(store._refreshing) <= set(keys)
