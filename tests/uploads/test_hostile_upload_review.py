"""Hostile uploads at the edges: bodies the form parser drops, names that tell too much,
images built to trip the re-encoding (RIFF chunks, shared GIF palettes, compact PNGs)."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, ImageChops, ImageSequence
from sqlalchemy import select
from werkzeug.test import TestResponse

from bastion.extensions import db
from bastion.models import Article, AuditEvent, User
from bastion.uploads import imaging
from tests.support.auth import csrf_token
from tests.uploads import corpus
from tests.uploads.conftest import (
    AVATAR,
    assert_store_consistent,
    only_upload,
    post_file,
    rejections,
    upload_count,
)

BOUNDARY = "b0undary"


def _multipart(
    client: FlaskClient, path: str, file_headers: bytes, content_type: str
) -> TestResponse:
    """Post a hand-made multipart body: a valid CSRF token, then one file part."""
    token = csrf_token(client, AVATAR)
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f"--{BOUNDARY}\r\n"
        ).encode()
        + file_headers
        + b"\r\n\r\n"
        + corpus.png()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return client.post(path, data=body, content_type=content_type)


def _csrf_failures() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "csrf.failure")))


LATIN1_NAME = b'Content-Disposition: form-data; name="image"; filename="caf\xe9.png"'
UNREADABLE = [
    # curl on a Latin-1 system sends the name's bytes as they are: not UTF-8.
    (LATIN1_NAME, f"multipart/form-data; boundary={BOUNDARY}"),
    # A client that forgets the boundary parameter.
    (b'Content-Disposition: form-data; name="image"; filename="a.png"', "multipart/form-data"),
]


@pytest.mark.asvs("V2.2.2", "V16.3.3")
@pytest.mark.parametrize(
    ("headers", "content_type"), UNREADABLE, ids=["latin-1-name", "no-boundary"]
)
def test_a_body_the_parser_drops_is_a_clear_400_not_a_forged_request(
    client: FlaskClient, editor: User, own_article: Article, headers: bytes, content_type: str
) -> None:
    # Werkzeug drops such a body silently; the CSRF check then found no token, answered
    # "This form has expired or was sent from another site" and audited a CSRF failure.
    for number, path in enumerate([AVATAR, f"/articles/{own_article.id}/images"], start=1):
        resp = _multipart(client, path, headers, content_type)
        assert resp.status_code == 400, path
        page = resp.get_data(as_text=True)
        assert "The upload could not be read" in page
        assert "expired" not in page
        events = rejections()
        assert len(events) == number
        assert (events[-1].details["reason"], events[-1].actor_id) == ("unreadable_form", editor.id)
    assert _csrf_failures() == []
    assert upload_count() == 0
    assert_store_consistent()


def test_an_unreadable_body_from_a_stranger_is_left_to_the_access_policy(app: Flask) -> None:
    anonymous = app.test_client()
    resp = anonymous.post(AVATAR, data=b"junk", content_type="multipart/form-data")
    assert resp.status_code in (302, 400, 401)
    assert "The upload could not be read" not in resp.get_data(as_text=True)
    assert rejections() == []


@pytest.mark.asvs("V5.4.1", "V5.4.2")
def test_a_profile_photo_is_served_under_no_name_its_owner_sent(
    app: Flask, client: FlaskClient, editor: User
) -> None:
    # The photo is public; its file name was: a phone's date and time, a person's name.
    sent = "PXL_20240315_142233 jane-doe-passport.jpg"
    assert post_file(client, AVATAR, corpus.png(), filename=sent).status_code == 302
    upload = only_upload()
    assert upload.original_name == sent  # kept for nothing but the record
    stranger = app.test_client()
    for path in (f"/uploads/{upload.id}", f"/uploads/{upload.id}?size=64"):
        resp = stranger.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["Content-Disposition"] == "inline; filename=photo.jpg"
        assert "PXL" not in str(resp.headers) and "jane" not in str(resp.headers)


def _gif(frames: list[Image.Image]) -> bytes:
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return out.getvalue()


def _worst_difference(sent: bytes, kept: bytes) -> int:
    """The largest difference of any channel of any pixel between two GIFs' frames."""
    with Image.open(io.BytesIO(sent)) as before, Image.open(io.BytesIO(kept)) as after:
        assert after.n_frames == before.n_frames
        return max(
            high
            for one, other in zip(ImageSequence.Iterator(before), ImageSequence.Iterator(after),
                                  strict=True)
            for _, high in ImageChops.difference(one.convert("RGB"), other.convert("RGB"))
            .getextrema()
        )


def _band_of_reds(reds: range) -> Image.Image:
    """Columns of ``reds`` against 15 rows of greens: few values a channel, many colours."""
    im = Image.new("RGB", (3 * len(reds), 30))
    im.putdata([(red, 17 * (y // 2), 100) for y in range(30) for red in reds for _ in range(3)])
    return im


@pytest.mark.asvs("V5.2.2")
def test_a_gif_of_more_colours_than_its_palette_keeps_every_pixel_near_its_colour() -> None:
    # 150 colours a frame, 300 between the two: the shared palette is chosen by octree, and
    # its colours took few enough values a channel for the exact path's ``spread`` tables,
    # which sent every value not in the palette to 0: reds off by up to 232.
    data = _gif([_band_of_reds(range(0, 130, 13)), _band_of_reds(range(130, 250, 12))])
    clean = imaging.process(data, kind="article")
    assert _worst_difference(data, clean.data) <= 16
