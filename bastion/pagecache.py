"""Public pages for anonymous visitors: rendered at most once per few seconds, with ETags.

Why: an anonymous visitor's home page is the same bytes for everyone (no CSRF token, no
nonce in the body, no name), yet rendering it costs a query and a template per request.
Each worker keeps the rendered body for ``PUBLIC_PAGE_CACHE_SECONDS`` (0 turns this off),
counted from when its rendering began; every response still passes through the full request
pipeline (rate limits, access policy, fresh CSP nonce, headers, logging) because only the
view's return value is reused. When a body expires, one request renders the new one while
the others answer with the old copy, for at most ``REFRESH_GRACE_SECONDS`` past its expiry
(never longer, even while renewals keep running): a page withdrawn by another worker, whose
``clear()`` empties only its own store, is served here for those seconds at most.

A body is stored only when rendering it left the session untouched and did not embed the
request's CSP nonce, so a page that grows a form (CSRF token) or an inline script can never
leak one visitor's token or nonce to another. Signed-in visitors, visitors with pending
flash messages and anything but GET/HEAD always get a fresh render.

Responses carry a strong ETag of the body and ``Cache-Control: no-cache`` with
``Vary: Cookie``: browsers revalidate every time and get ``304 Not Modified`` when nothing
changed; a shared cache may keep only the anonymous version.

``remember_tagged`` serves the API the same way for data that is identical for every caller
allowed to ask (the published article list): the view authenticates and authorizes first,
then asks for the bytes. The store is bounded by bytes and entries.

Pages are stored under their endpoint and converted URL arguments, not the raw path: the
router already answers only the canonical spelling of an id (``bastion.routing``), and a
converter that let other spellings through would still not add entries. Entries under a
query string, which any client can vary without end, are held to a share of the store of
their own: a flood of random query strings empties only that share, never the pages every
reader asks for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, NamedTuple, TypeVar

from flask import Response, abort, current_app, g, request, session
from flask_login import current_user
from werkzeug.http import generate_etag, quote_etag

from bastion.http_preconditions import precondition_status

F = TypeVar("F", bound=Callable[..., Any])
_CACHE_KEY = "bastion.page_cache"


def _anonymous_reader() -> bool:
    # Each proxy looked up once: every use of one costs about 2 us on a slow host.
    if request.method not in ("GET", "HEAD"):
        return False
    sess = session._get_current_object()  # type: ignore[attr-defined]
    if "sid" in sess or "_flashes" in sess:
        return False
    return not current_user.is_authenticated


# Per worker and bounded by size, not count: one API page may hold 100 long articles.
STORE_BUDGET_BYTES = 16 * 1024 * 1024
ENTRY_MAX_BYTES = 2 * 1024 * 1024
MAX_ENTRIES = 512
# Entries keyed on what a client may vary freely (query strings, API search terms) get at
# most half the bytes and entries; when that half is full it alone is emptied.
VARIED_SHARE = 2
# While one request renders the new copy of an expired entry, the others keep answering
# with the old one, until this long after it expired (then another request tries again).
REFRESH_GRACE_SECONDS = 2.0


class _Store:
    """key -> (deadline, value, size); emptied whole when the byte or entry budget would
    overflow, the varied keys alone when their share or the whole store would (and a varied
    key is not kept when the plain pages alone fill the store).

    An expired entry is renewed by one request at a time: the first to find it expired
    renders, the others answer with the previous copy meanwhile. Without this, every
    thread that arrives during a slow render (an article page takes a few milliseconds)
    renders too, all at once, and the requests queued behind them wait for all of it.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple[str, ...], tuple[float, Any, int]] = {}
        self.size = 0
        self.varied: set[tuple[str, ...]] = set()  # keys a client can vary without end
        self.varied_size = 0
        self._refreshing: dict[tuple[str, ...], float] = {}  # key -> until when
        self._lock = threading.Lock()  # gunicorn's gthread workers serve several threads

    def put(
        self,
        key: tuple[str, ...],
        value: Any,
        size: int,
        ttl: float,
        *,
        varied: bool = False,
        read_at: float | None = None,
    ) -> None:
        """Store ``value`` for ``ttl`` seconds from ``read_at``: when producing it began, so
        from before the data it shows was read (a slow render does not lengthen its life);
        now by default. ``varied`` for a key any client can make up (a query string)."""
        deadline = (time.monotonic() if read_at is None else read_at) + ttl
        with self._lock:
            self._refreshing.pop(key, None)
            self._drop(key)  # never kept as the stale copy of a new value
            if size > ENTRY_MAX_BYTES:
                return
            if varied and (
                self.varied_size + size > STORE_BUDGET_BYTES // VARIED_SHARE
                or len(self.varied) >= MAX_ENTRIES // VARIED_SHARE
                # The plain pages may hold more than their half: then the whole store is
                # full before the share is, and must not be emptied for a made-up key.
                or self.size + size > STORE_BUDGET_BYTES
                or len(self.entries) >= MAX_ENTRIES
            ):
                # Made-up query strings empty their own share, never the plain pages.
                for old_key in list(self.varied):
                    self._refreshing.pop(old_key, None)
                    self._drop(old_key)
            if self.size + size > STORE_BUDGET_BYTES or len(self.entries) >= MAX_ENTRIES:
                if varied:
                    return  # the plain pages alone fill the store: this one is not kept
                self.entries.clear()
                self._refreshing.clear()
                self.varied.clear()
                self.size = self.varied_size = 0
            self.entries[key] = (deadline, value, size)
            self.size += size
            if varied:
                self.varied.add(key)
                self.varied_size += size

    def _drop(self, key: tuple[str, ...]) -> None:
        """Forget ``key``'s entry and its bytes; the caller holds the lock."""
        old = self.entries.pop(key, None)
        if old is None:
            return
        self.size -= old[2]
        if key in self.varied:
            self.varied.discard(key)
            self.varied_size -= old[2]

    def release(self, key: tuple[str, ...]) -> None:
        """The request renewing ``key`` will not store anything: let the next one try, and
        drop the old copy. Its renewal failed (the article was deleted or unpublished: a
        404) or came out personal, so nothing vouches for it any more; kept, it would be
        served to everyone arriving during each later renewal, for as long as the
        requests kept coming."""
        with self._lock:
            self._refreshing.pop(key, None)
            self._drop(key)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: tuple[str, ...]) -> Any | None:
        """The stored value; None tells the caller to produce (and ``put``) a new one.

        An expired value still answers while another request renews it, but only within
        ``REFRESH_GRACE_SECONDS`` of its expiry: found later (nobody asked for it for a
        while, or renewals keep failing slowly), it is dropped, and every caller renders.
        """
        entry = self.entries.get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if entry[0] > now:
            return entry[1]
        with self._lock:
            if now >= entry[0] + REFRESH_GRACE_SECONDS:
                if self.entries.get(key) is entry:  # not a new value put meanwhile
                    self._drop(key)
            elif self._refreshing.get(key, 0.0) > now:
                return entry[1]  # another request is renewing it
            self._refreshing[key] = now + REFRESH_GRACE_SECONDS
        return None


class Tagged(NamedTuple):
    """Stored bytes with their strong ETag, hashed once when stored instead of per answer."""

    data: bytes
    etag: str

    @classmethod
    def of(cls, data: bytes) -> Tagged:
        return cls(data, generate_etag(data))  # what Response.add_etag() would compute


def _held(key: tuple[str, ...], stored: Tagged) -> int:
    """The bytes an entry holds: its key too, a query string of up to 4 KiB (the request
    line's limit) that a client chose, which would otherwise grow the store past its bound."""
    return len(stored.data) + sum(map(len, key))


def _store_for_app() -> _Store:
    store: _Store | None = current_app.extensions.get(_CACHE_KEY)
    if store is None:
        store = current_app.extensions[_CACHE_KEY] = _Store()
    return store


def _ttl() -> float:
    return float(current_app.config.get("PUBLIC_PAGE_CACHE_SECONDS", 0))


def remember_tagged(
    key: tuple[str, ...], produce: Callable[[], bytes], *, varied: bool = True
) -> Tagged:
    """``produce()``'s bytes for ``key`` with their ETag, reused for ``PUBLIC_PAGE_CACHE_SECONDS``.

    Only for data that is the same for every caller allowed to ask (the published article
    list): the caller authenticates and authorizes before asking, on every request.
    ``varied``: the key holds what a caller chose (search terms, page numbers), so it is
    kept in the share that made-up keys cannot spill out of; False only for a fixed key.
    """
    ttl = _ttl()
    if ttl <= 0:
        return Tagged.of(produce())
    store = _store_for_app()
    tagged = store.get(key)
    if not isinstance(tagged, Tagged):
        read_at = time.monotonic()
        try:
            tagged = Tagged.of(produce())
        except BaseException:
            store.release(key)
            raise
        store.put(key, tagged, _held(key, tagged), ttl, varied=varied, read_at=read_at)
    return tagged


def _personal(body: str) -> bool:
    """Did rendering embed something of this visitor's (CSRF token, nonce, session data)?"""
    # Flask-WTF keeps the token it generated in g, even when the session already held the
    # raw value and so was not modified.
    if session.modified or "csrf_token" in g:
        return True
    nonce = getattr(request, "csp_nonce", None)
    return bool(nonce and nonce in body)


# The conditions a page answers: it has no Last-Modified, so the date conditions are
# ignored (RFC 9110 13.1.3, 13.1.4), and it is never served by ranges.
_CONDITIONS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH")
PAGE_CHANGED = (
    "This page has changed since the version named by If-Match. Load it again without that header."
)


def _conditional(page: Tagged) -> Response:
    """The stored page with its ETag; a 304, or a 412 error page, when a condition says so.

    Built directly on every reuse, so done cheaply: ``make_response`` of bytes is this
    ``response_class(data)``, whose only headers are Content-Type and Content-Length, so
    appending Cache-Control, Vary and ETag gives what ``headers[...] =``, ``vary.add`` and
    ``set_etag`` give (each of those walks or re-parses the headers).

    Conditions in RFC 9110's order (``bastion.http_preconditions``), not Werkzeug's
    ``make_conditional``: that answered ``If-Match: *`` with 412, a stale If-Match with a
    412 whose body was the whole page, and a matching If-Match with a matching
    If-None-Match with 200 instead of 304.
    """
    req = request._get_current_object()  # type: ignore[attr-defined]
    response: Response = current_app.response_class(page.data)
    headers = response.headers
    headers.add("Cache-Control", "no-cache")
    headers.add("Vary", "Cookie")
    headers.add("ETag", quote_etag(page.etag))
    environ = req.environ
    if any(name in environ for name in _CONDITIONS):
        status = precondition_status(response, environ)
        if status == 412:
            abort(412, description=PAGE_CHANGED)
        if status == 304:
            response.status_code = 304  # Werkzeug sends it without the body or its headers
    return response


def _render(view: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """The view's page as stored bytes, or its result as is when it is no shareable page."""
    result = view(*args, **kwargs)
    if not isinstance(result, str) or _personal(result):
        return result  # tied to this visitor (or not a page): neither stored nor tagged
    return Tagged.of(result.encode())


def _page_key() -> tuple[str, ...]:
    """The page's endpoint, its URL arguments as the view receives them and the query.

    Not ``request.path``: should a converter ever read two spellings as one value, each
    spelling would otherwise be one more entry any client can add.
    """
    req = request._get_current_object()  # type: ignore[attr-defined]
    args = sorted((req.view_args or {}).items())
    return (req.endpoint or "", repr(args), req.query_string.decode("latin-1"))


def cached_public_page(view: F) -> F:
    """Reuse the rendered page for anonymous visitors; always answer with an ETag."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _anonymous_reader():
            return view(*args, **kwargs)
        ttl = _ttl()
        key = _page_key()
        store = _store_for_app() if ttl > 0 else None
        page = store.get(key) if store is not None else None
        if not isinstance(page, Tagged):
            read_at = time.monotonic() if store is not None else None
            try:
                page = _render(view, args, kwargs)
            except BaseException:
                if store is not None:
                    store.release(key)
                raise
            if store is not None:
                if isinstance(page, Tagged):
                    store.put(
                        key, page, _held(key, page), ttl, varied=bool(key[-1]), read_at=read_at
                    )
                else:
                    store.release(key)
            if not isinstance(page, Tagged):
                return page
        return _conditional(page)

    return wrapper  # type: ignore[return-value]


def clear() -> None:
    """Forget every stored page (tests; a service may call it after a change)."""
    current_app.extensions.pop(_CACHE_KEY, None)
