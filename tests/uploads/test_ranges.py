"""A byte range outside a served image is a plain 416 that says how long the image is.

A resumed download of a finished image (``Range: bytes=<size>-``), or any range past its
end, was answered with the site's HTML error page under the image's sandbox policy: the
page lost its stylesheet, icon and sign-out form and sent CSP reports of its own (as the
plain 404 of a missing image was fixed for), and the ``Content-Range: bytes */<size>``
that tells a client what it may ask for (RFC 9110 15.5.17) was dropped.

Only a byte range the image does not have is a 416: a range Werkzeug cannot use (malformed,
backwards, another unit, several ranges) is ignored and the whole image served, and so are
``If-Match: *`` and an ``If-Modified-Since`` in the future (``bastion/http_preconditions.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.models import Article
from tests.uploads import corpus
from tests.uploads.conftest import only_upload, post_file


@pytest.mark.asvs("V3.4.3", "V3.4.4")
@pytest.mark.parametrize("ranges", ["bytes={size}-", "bytes={size}-{size}"])
def test_a_range_outside_an_image_is_a_plain_416(
    app: Flask, client: FlaskClient, own_article: Article, ranges: str
) -> None:
    resp = post_file(client, f"/articles/{own_article.id}/images", corpus.png(),
                     filename="chart.png")
    assert resp.status_code == 302
    upload = only_upload()
    anonymous = app.test_client()
    size = len(anonymous.get(f"/uploads/{upload.id}").data)

    resp = anonymous.get(f"/uploads/{upload.id}", headers={"Range": ranges.format(size=size)})
    assert resp.status_code == 416
    assert resp.mimetype == "text/plain"
    assert "<" not in resp.get_data(as_text=True)
    assert resp.headers["Content-Range"] == f"bytes */{size}"
    directives = {d.strip() for d in resp.headers["Content-Security-Policy"].split(";")}
    assert {"sandbox", "default-src 'none'", "frame-ancestors 'none'"} <= directives
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    # A range inside the image is still served.
    part = anonymous.get(f"/uploads/{upload.id}", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and len(part.data) == 10


def _http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


@pytest.mark.asvs("V3.4.4")
@pytest.mark.parametrize(
    "headers",
    [
        {"Range": "bytes=x-y"},
        {"Range": "bytes=5-2"},
        {"Range": "items=0-5"},
        {"Range": "bytes=0-1,4-5"},
        {"If-Match": "*"},
        {"If-Modified-Since": _http_date(datetime.now(UTC) + timedelta(days=365))},
    ],
)
def test_a_condition_or_range_that_cannot_apply_gets_the_whole_image(
    app: Flask, client: FlaskClient, own_article: Article, headers: dict[str, str]
) -> None:
    """Werkzeug answered these 416, 412 and 304 (RFC 9110 14.2, 13.1.1)."""
    post_file(client, f"/articles/{own_article.id}/images", corpus.png(), filename="chart.png")
    upload = only_upload()
    anonymous = app.test_client()
    whole = anonymous.get(f"/uploads/{upload.id}").data

    resp = anonymous.get(f"/uploads/{upload.id}", headers=headers)
    assert resp.status_code == 200
    assert resp.data == whole
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    # The conditions that do apply are answered as before.
    url = f"/uploads/{upload.id}"
    assert anonymous.get(url, headers={"If-Match": '"other"'}).status_code == 412
    assert anonymous.get(url, headers={"If-Match": resp.headers["ETag"]}).status_code == 200
    since = {"If-Modified-Since": resp.headers["Last-Modified"]}
    assert anonymous.get(url, headers=since).status_code == 304
