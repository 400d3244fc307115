"""A byte range outside a served image is a plain 416 that says how long the image is.

A resumed download of a finished image (``Range: bytes=<size>-``), or any range past its
end, was answered with the site's HTML error page under the image's sandbox policy: the
page lost its stylesheet, icon and sign-out form and sent CSP reports of its own (as the
plain 404 of a missing image was fixed for), and the ``Content-Range: bytes */<size>``
that tells a client what it may ask for (RFC 9110 15.5.17) was dropped.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.models import Article
from tests.uploads import corpus
from tests.uploads.conftest import only_upload, post_file


@pytest.mark.asvs("V3.4.3", "V3.4.4")
@pytest.mark.parametrize("ranges", ["bytes={size}-", "bytes=0-1,4-5", "bytes=x-y"])
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
