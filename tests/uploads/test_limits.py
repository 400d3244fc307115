"""Size limit before the body is read, quota, rate limit: refusals are clear and audited."""

from __future__ import annotations

import io
import tracemalloc

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.models import User
from tests.support.auth import csrf_token
from tests.uploads import corpus
from tests.uploads.conftest import (
    AVATAR,
    assert_store_consistent,
    post_file,
    rejections,
    upload_count,
)

DECLARED = 50 * 1024 * 1024


class EndlessBody(io.RawIOBase):
    """A request body that would be 50 MB; counts what the server actually reads."""

    def __init__(self) -> None:
        self.read_bytes = 0
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # only so the test client can learn the declared length

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = DECLARED if whence == 2 else offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        n = min(len(buffer), 64 * 1024)
        buffer[:n] = b"x" * n
        self.read_bytes += n
        return n


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_oversized_body_is_413_before_it_is_read(client: FlaskClient, editor: User) -> None:
    body = EndlessBody()
    tracemalloc.start()
    try:
        resp = client.post(
            AVATAR,
            input_stream=body,
            content_length=DECLARED,
            content_type="multipart/form-data; boundary=b",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status_code == 413
    assert "larger than 5 MB" in resp.get_data(as_text=True)
    assert body.read_bytes == 0
    assert peak < 2 * 1024 * 1024, f"request used {peak} bytes of memory"
    assert [e.details["reason"] for e in rejections()] == ["too_large"]
    assert upload_count() == 0


@pytest.mark.asvs("V5.2.1")
def test_file_just_over_the_limit_is_413_with_a_clear_message(
    app: Flask, client: FlaskClient, editor: User
) -> None:
    data = corpus.png() + b"\x00" * app.config["MAX_UPLOAD_BYTES"]
    resp = post_file(client, AVATAR, data)
    assert resp.status_code == 413
    assert "larger than 5 MB" in resp.get_data(as_text=True)
    assert [e.details["reason"] for e in rejections()] == ["too_large"]
    assert upload_count() == 0
    assert_store_consistent()


@pytest.mark.asvs("V5.2.1", "V16.5.1")
@pytest.mark.parametrize(
    "extra",
    [
        {f"field{i}": "x" for i in range(2_000)},  # over MAX_FORM_PARTS
        {"next": "x" * (1024 * 1024)},  # a text field over MAX_FORM_MEMORY_SIZE
    ],
    ids=["too-many-parts", "long-text-field"],
)
def test_a_bloated_form_with_a_small_file_is_413_saying_so(
    client: FlaskClient, editor: User, extra: dict[str, str]
) -> None:
    resp = post_file(client, AVATAR, corpus.png(), **extra)
    assert resp.status_code == 413
    page = resp.get_data(as_text=True)
    assert "too many fields or a field that is too long" in page
    assert "larger than" not in page  # the file is 94 bytes
    assert [e.details["reason"] for e in rejections()] == ["form_too_large"]
    assert upload_count() == 0


def test_other_routes_keep_the_small_global_body_limit(client: FlaskClient, editor: User) -> None:
    token = csrf_token(client, "/")
    resp = client.post(
        "/auth/logout",
        data={"csrf_token": token, "pad": "x" * (2 * 1024 * 1024)},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 413


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_an_image_that_would_be_stored_far_larger_than_sent_is_refused_and_not_stored(
    client: FlaskClient, own_article  # type: ignore[no-untyped-def]
) -> None:
    # 550 KB of GIF, within every limit, that re-encodes to about 55 MB of frames: refused
    # while it is encoded, before anything is written.
    data = corpus.gif_of_noise_clearing(side=632, frames=100)
    resp = post_file(client, f"/articles/{own_article.id}/images", data,
                     filename="noise.gif", content_type="image/gif")
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert "would take more than 16 MB" in page
    assert "fewer or smaller frames" in page
    assert [e.details["reason"] for e in rejections()] == ["too_large_after_cleaning"]
    assert upload_count() == 0
    assert_store_consistent()  # and no file without its row


@pytest.mark.asvs("V2.3.2")
def test_file_quota_refuses_the_next_upload(
    app: Flask,
    client: FlaskClient,
    own_article,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setitem(app.config, "UPLOAD_QUOTA_FILES", 2)
    path = f"/articles/{own_article.id}/images"
    assert post_file(client, path, corpus.png()).status_code == 302
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    # Replacing the avatar does not need room for a second one.
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    resp = post_file(client, path, corpus.png())
    assert resp.status_code == 422
    assert "upload quota is used up" in resp.get_data(as_text=True)
    assert [e.details["reason"] for e in rejections()] == ["quota"]
    assert upload_count() == 2
    assert_store_consistent()


@pytest.mark.asvs("V2.3.2")
def test_byte_quota_counts_stored_bytes(
    app: Flask,
    client: FlaskClient,
    own_article,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setitem(app.config, "UPLOAD_QUOTA_BYTES", 200)
    resp = post_file(
        client, f"/articles/{own_article.id}/images", corpus.image_bytes("PNG", (300, 300), "RGB")
    )
    # A 300x300 solid PNG re-encodes to a few hundred bytes: over a 200-byte quota.
    assert resp.status_code == 422
    assert upload_count() == 0


@pytest.mark.asvs("V2.3.2", "V15.2.2")
@pytest.mark.parametrize("limit", ["files", "bytes"])
def test_a_user_at_the_quota_is_refused_before_the_image_is_decoded(
    app: Flask,
    client: FlaskClient,
    own_article,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    limit: str,
) -> None:
    from bastion.uploads import imaging
    from bastion.uploads.services import usage

    path = f"/articles/{own_article.id}/images"
    assert post_file(client, path, corpus.png()).status_code == 302
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    files, stored = usage(own_article.author_id)
    if limit == "files":
        monkeypatch.setitem(app.config, "UPLOAD_QUOTA_FILES", files)
    else:
        monkeypatch.setitem(app.config, "UPLOAD_QUOTA_BYTES", stored)
    # Another request's image holds the decoder: an upload that needs it waits its turn.
    monkeypatch.setattr(imaging, "DECODE_WAIT_SECONDS", 0.01)
    assert imaging.DECODE_SLOTS.acquire(timeout=5)
    try:
        refused = post_file(client, path, corpus.png())
        replacement = post_file(client, AVATAR, corpus.png())
    finally:
        imaging.DECODE_SLOTS.release()
    # Told at once that the quota is used up, not to try again in a minute (and, once the
    # decoder was free, the image would have been decoded only to be refused).
    assert refused.status_code == 422
    assert "upload quota is used up" in refused.get_data(as_text=True)
    # A new photo takes the old one's room: it still waits for the decoder.
    assert replacement.status_code == 503
    assert [e.details["reason"] for e in rejections()] == ["quota", "busy"]
    assert upload_count() == 2
    assert_store_consistent()


@pytest.mark.asvs("V15.2.2", "V2.2.1")
def test_an_upload_that_cannot_get_its_turn_is_a_clear_503_and_changes_nothing(
    client: FlaskClient, editor: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.extensions import db
    from bastion.uploads import imaging
    from tests.uploads.conftest import only_upload

    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    before = only_upload()
    monkeypatch.setattr(imaging, "DECODE_WAIT_SECONDS", 0.01)
    assert imaging.DECODE_SLOTS.acquire(timeout=5)  # another request's image is in progress
    try:
        resp = post_file(client, AVATAR, corpus.image_bytes("JPEG", (64, 64)))
    finally:
        imaging.DECODE_SLOTS.release()
    assert resp.status_code == 503
    assert "try again in a minute" in resp.get_data(as_text=True)
    assert [e.details["reason"] for e in rejections()] == ["busy"]
    assert only_upload().id == before.id
    assert db.session.get(User, editor.id).avatar_id == before.id
    assert_store_consistent()


@pytest.mark.asvs("V2.4.1")
def test_uploads_are_rate_limited_per_user(
    app: Flask, client: FlaskClient, editor: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "UPLOAD_RATE_LIMIT", "2 per minute")
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    resp = post_file(client, AVATAR, corpus.png())
    assert resp.status_code == 429
    assert resp.headers["Retry-After"]


def test_upload_settings_come_from_the_environment(
    make_app,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("BASTION_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("BASTION_UPLOAD_QUOTA_FILES", "9")
    monkeypatch.setenv("BASTION_UPLOAD_QUOTA_MB", "7")
    monkeypatch.setenv("BASTION_UPLOAD_RATE_LIMIT", "5 per minute")
    cfg = make_app(READ_ENV=True).config
    assert cfg["MAX_UPLOAD_BYTES"] == 2 * 1024 * 1024
    assert cfg["UPLOAD_QUOTA_FILES"] == 9
    assert cfg["UPLOAD_QUOTA_BYTES"] == 7 * 1024 * 1024
    assert cfg["UPLOAD_RATE_LIMIT"] == "5 per minute"
