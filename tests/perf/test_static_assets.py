"""Static files: content-hashed URLs that browsers keep for a year, and nothing else cached."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.static_assets import IMMUTABLE, StaticDigests
from tests.factories import PASSWORD, UserFactory

STYLESHEET = re.compile(r'href="(/static/css/bastion\.css\?v=([0-9a-f]+))"')


def _digest(app: Flask, filename: str) -> str:
    data = (Path(app.static_folder or "") / filename).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _stylesheet_url(client: FlaskClient) -> tuple[str, str]:
    found = STYLESHEET.search(client.get("/").get_data(as_text=True))
    assert found, "the page links its stylesheet through url_for('static')"
    return found.group(1), found.group(2)


def test_pages_link_static_files_by_the_hash_of_their_bytes(app: Flask, client: FlaskClient) -> None:
    _, version = _stylesheet_url(client)
    assert version == _digest(app, "css/bastion.css")


def test_a_versioned_url_is_kept_for_a_year(app: Flask, client: FlaskClient) -> None:
    url, _ = _stylesheet_url(client)
    resp = client.get(url)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == IMMUTABLE
    assert resp.data == (Path(app.static_folder or "") / "css/bastion.css").read_bytes()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("query", ["", "?v=0000000000000000", "?v=", "?v=../../config"])
def test_an_unversioned_or_stale_url_is_served_but_revalidated(
    client: FlaskClient, query: str
) -> None:
    resp = client.get("/static/css/bastion.css" + query)
    assert resp.status_code == 200
    assert "immutable" not in resp.headers.get("Cache-Control", "")
    assert resp.headers["Cache-Control"] == "no-cache"


@pytest.mark.asvs("V14.3.2")
def test_signed_in_users_cache_static_files_but_never_their_pages(
    client: FlaskClient, auth  # type: ignore[no-untyped-def]
) -> None:
    user = UserFactory()
    auth.login(user.username, PASSWORD)
    page = client.get("/")
    assert page.headers["Cache-Control"] == "no-store"
    url = STYLESHEET.search(page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    asset = client.get(url)
    assert asset.status_code == 200
    assert asset.headers["Cache-Control"] == IMMUTABLE
    assert "Set-Cookie" not in asset.headers  # nothing of this user's in a public answer


def test_a_missing_file_is_a_plain_404_with_no_cache_promise(client: FlaskClient) -> None:
    resp = client.get("/static/css/nothing.css?v=0000000000000000")
    assert resp.status_code == 404
    assert "immutable" not in resp.headers.get("Cache-Control", "")


def test_names_outside_the_folder_have_no_digest(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "a.css").write_text("a{}")
    (tmp_path / "secret.txt").write_text("no")
    digests = StaticDigests(str(tmp_path / "static"), watch=True)
    assert digests.get("a.css") is not None
    for name in ("../secret.txt", "/etc/passwd", "./a.css", "", "A.CSS"):
        assert digests.get(name) is None


@pytest.mark.parametrize("watch", [True, False])
def test_an_edited_file_gets_a_new_url_only_when_watching(tmp_path: Path, watch: bool) -> None:
    css = tmp_path / "site.css"
    css.write_text("body{color:red}")
    digests = StaticDigests(str(tmp_path), watch=watch)
    before = digests.get("site.css")
    css.write_text("body{color:blue;}")  # another size, so the change shows even within a tick
    after = digests.get("site.css")
    assert before == hashlib.sha256(b"body{color:red}").hexdigest()[:16]
    if watch:  # development: edits show on the next page
        assert after == hashlib.sha256(b"body{color:blue;}").hexdigest()[:16]
    else:  # production: the files shipped with the code, hashed once at start-up
        assert after == before
    css.unlink()
    assert (digests.get("site.css") is None) is watch


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Range": "bytes=x-y"}, 200),
        ({"Range": "items=0-5"}, 200),
        ({"Range": "bytes=0-1,4-5"}, 200),
        ({"Range": "bytes=0-3"}, 206),
        ({"Range": "bytes=99999999-"}, 416),
        ({"If-Match": "*"}, 200),
        ({"If-Match": '"other"'}, 412),
        ({"If-Modified-Since": format_datetime(datetime.now(UTC) + timedelta(1), usegmt=True)},
         200),
    ],
)
def test_conditions_and_ranges_that_cannot_apply_are_ignored(
    app: Flask, client: FlaskClient, headers: dict[str, str], status: int
) -> None:
    """Werkzeug answered an unusable range 416, ``If-Match: *`` 412 and a date in the
    future 304 (bastion/http_preconditions.py); ranges and tags that apply still work."""
    resp = client.get("/static/css/bastion.css", headers=headers)
    assert resp.status_code == status
    if status == 200:
        assert resp.data == (Path(app.static_folder or "") / "css/bastion.css").read_bytes()
    since = {"If-Modified-Since": client.get("/static/css/bastion.css").headers["Last-Modified"]}
    assert client.get("/static/css/bastion.css", headers=since).status_code == 304


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"If-Match": '"an-earlier-version"', "Range": "bytes=10-"}, 412),
        ({"If-Match": '"an-earlier-version"', "Range": "bytes=99999999-"}, 412),
        ({"If-Unmodified-Since": "{earlier}"}, 412),
        ({"If-Unmodified-Since": "{earlier}", "Range": "bytes=0-3"}, 412),
        ({"If-Unmodified-Since": "{earlier}", "If-None-Match": "{etag}"}, 412),
        ({"If-Match": "{etag}", "If-None-Match": "{etag}"}, 304),
    ],
)
def test_preconditions_are_answered_before_ranges(
    app: Flask, client: FlaskClient, headers: dict[str, str], status: int
) -> None:
    """RFC 9110 13.2.2: If-Match, else If-Unmodified-Since, then If-None-Match, then Range.

    Werkzeug served the range first, so a client resuming the download of a stylesheet that
    changed since (its old ETag in If-Match) got the new file's bytes to join to the old
    ones; and it never read If-Unmodified-Since. Its 412 carried the whole file as body.
    """
    path = "/static/css/bastion.css"
    whole = client.get(path)
    modified = datetime.strptime(whole.headers["Last-Modified"], "%a, %d %b %Y %H:%M:%S GMT")
    values = {
        "etag": whole.headers["ETag"],
        "earlier": format_datetime(modified.replace(tzinfo=UTC) - timedelta(1), usegmt=True),
    }

    resp = client.get(path, headers={k: v.format(**values) for k, v in headers.items()})
    assert resp.status_code == status
    if status == 412:
        assert resp.mimetype == "text/plain"
        assert whole.data[:20] not in resp.data
        assert "Content-Range" not in resp.headers
        assert "immutable" not in resp.headers.get("Cache-Control", "")
    else:
        assert resp.data == b""
    # The same headers naming the current version get the normal answers.
    current = {"If-Match": values["etag"], "If-Unmodified-Since": whole.headers["Last-Modified"]}
    ranged = client.get(path, headers={**current, "Range": "bytes=10-"})
    assert ranged.status_code == 206 and ranged.data == whole.data[10:]
    assert client.get(path, headers=current).data == whole.data
    assert client.get(path, headers={"If-Unmodified-Since": "not a date"}).status_code == 200
