"""Preconditions on a served image are evaluated before its ranges (RFC 9110 13.2.2).

Werkzeug served a ``Range`` before it looked at ``If-Match``, and never read
``If-Unmodified-Since``; ``bastion/http_preconditions.py`` answers them in the RFC's order:
If-Match, else If-Unmodified-Since (412), then If-None-Match / If-Modified-Since (304),
then the range.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.http import http_date, parse_date
from werkzeug.test import TestResponse

from bastion.models import Article
from tests.uploads import corpus
from tests.uploads.conftest import only_upload, post_file

STALE_ETAG = '"an-earlier-version"'


def _published_image(app: Flask, client: FlaskClient, article: Article) -> tuple[str, TestResponse]:
    """The URL of a real uploaded image and its whole answer to an anonymous GET."""
    resp = post_file(client, f"/articles/{article.id}/images", corpus.png(), filename="chart.png")
    assert resp.status_code == 302
    url = f"/uploads/{only_upload().id}"
    whole = app.test_client().get(url)
    assert whole.status_code == 200 and len(whole.data) > 20
    return url, whole


def _earlier(whole: TestResponse) -> str:
    """A date a day before the image's ``Last-Modified``."""
    modified = parse_date(whole.headers["Last-Modified"])
    assert modified is not None
    return http_date(modified - timedelta(days=1))


def _assert_refused(resp: TestResponse, image: bytes) -> None:
    """A 412 in plain text that carries none of the image's bytes."""
    assert resp.status_code == 412
    assert resp.mimetype == "text/plain"
    assert "changed" in resp.get_data(as_text=True)
    assert image[:8] not in resp.data and image[-8:] not in resp.data
    assert "Content-Range" not in resp.headers
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "store" in resp.headers["Cache-Control"]


@pytest.mark.asvs("V3.4.4")
@pytest.mark.parametrize("ranges", ["bytes=10-", "bytes=0-9", "bytes=-5"])
def test_a_stale_if_match_with_a_range_is_412_not_part_of_the_new_file(
    app: Flask, client: FlaskClient, own_article: Article, ranges: str
) -> None:
    """A client resuming the download of a file that changed since it began sends the old
    ETag in If-Match with the Range of the bytes it lacks. Served those bytes of the new
    file (Werkzeug's 206), it would glue them onto the old ones: a file that is neither.
    The precondition is answered first, so it gets a 412 and starts again."""
    url, whole = _published_image(app, client, own_article)
    anonymous = app.test_client()

    resp = anonymous.get(url, headers={"Range": ranges, "If-Match": STALE_ETAG})
    _assert_refused(resp, whole.data)
    # The same resumption against the current version gets its bytes.
    current = anonymous.get(url, headers={"Range": "bytes=10-", "If-Match": whole.headers["ETag"]})
    assert current.status_code == 206
    assert current.data == whole.data[10:]
    assert current.headers["Content-Range"] == f"bytes 10-{len(whole.data) - 1}/{len(whole.data)}"


@pytest.mark.parametrize("ranges", [None, "bytes=0-9"])
def test_if_unmodified_since_before_the_last_change_is_412(
    app: Flask, client: FlaskClient, own_article: Article, ranges: str | None
) -> None:
    """Werkzeug never read If-Unmodified-Since: a copy from before the change was served."""
    url, whole = _published_image(app, client, own_article)
    anonymous = app.test_client()
    extra = {"Range": ranges} if ranges else {}

    resp = anonymous.get(url, headers={"If-Unmodified-Since": _earlier(whole), **extra})
    _assert_refused(resp, whole.data)
    # Unchanged since the date given: the normal answer.
    ok = anonymous.get(url, headers={"If-Unmodified-Since": whole.headers["Last-Modified"], **extra})
    assert ok.status_code == (206 if ranges else 200)
    assert ok.data == (whole.data[:10] if ranges else whole.data)
    # Ignored when If-Match is there (RFC 9110 13.1.4), passing or "*", and when the date
    # does not parse.
    for headers in (
        {"If-Match": whole.headers["ETag"], "If-Unmodified-Since": _earlier(whole)},
        {"If-Match": "*", "If-Unmodified-Since": _earlier(whole)},
        {"If-Unmodified-Since": "yesterday"},
        {"If-Unmodified-Since": "Mon, 99 Foo 2024 25:61:61 GMT"},
    ):
        assert anonymous.get(url, headers=headers).status_code == 200, headers


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        # A failed If-Match outranks a range past the end (Werkzeug: 416).
        ({"If-Match": STALE_ETAG, "Range": "bytes=999999-"}, 412),
        # and a matching If-None-Match (both 412, the precondition that failed first).
        ({"If-Match": STALE_ETAG, "If-None-Match": "{etag}"}, 412),
        # A stale If-Unmodified-Since outranks a matching If-None-Match (Werkzeug: 304).
        ({"If-Unmodified-Since": "{earlier}", "If-None-Match": "{etag}"}, 412),
        # A passing If-Match still lets If-None-Match answer 304 (Werkzeug: 200).
        ({"If-Match": "{etag}", "If-None-Match": "{etag}"}, 304),
    ],
)
def test_preconditions_are_evaluated_in_the_rfc_order(
    app: Flask, client: FlaskClient, own_article: Article, headers: dict[str, str], status: int
) -> None:
    url, whole = _published_image(app, client, own_article)
    values = {"etag": whole.headers["ETag"], "earlier": _earlier(whole)}

    resp = app.test_client().get(url, headers={k: v.format(**values) for k, v in headers.items()})
    assert resp.status_code == status
    if status == 412:
        _assert_refused(resp, whole.data)
    else:
        assert resp.data == b""
