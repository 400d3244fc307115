"""Files follow rows: deletes remove files after commit; failures and races leave no debris."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.content.services import delete_article
from bastion.extensions import db
from bastion.models import Article, AuditEvent, Upload, User
from bastion.uploads import services, storage
from tests.factories import UserFactory
from tests.support.auth import csrf_token
from tests.uploads import corpus
from tests.uploads.conftest import (
    AVATAR,
    assert_store_consistent,
    only_upload,
    post_file,
    sign_in,
    upload_count,
)


def _files(upload: Upload) -> list:  # type: ignore[type-arg]
    return [storage.path_for(n) for n in services.file_names(upload)]


def test_owner_deletes_an_image_and_its_files_go(client: FlaskClient, own_article: Article) -> None:
    path = f"/articles/{own_article.id}/images"
    assert post_file(client, path, corpus.png()).status_code == 302
    upload = only_upload()
    files = _files(upload)
    assert all(f.is_file() for f in files)
    resp = client.post(
        f"/uploads/{upload.id}/delete", data={"csrf_token": csrf_token(client, path), "next": path}
    )
    assert resp.status_code == 302
    assert resp.headers["Location"] == path
    assert upload_count() == 0
    assert not any(f.exists() for f in files)


@pytest.mark.asvs("V8.2.2")
def test_others_cannot_delete_an_image(app: Flask, client: FlaskClient, editor: User) -> None:
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    upload = only_upload()
    other = app.test_client()
    sign_in(other, "editor")
    resp = other.post(
        f"/uploads/{upload.id}/delete", data={"csrf_token": csrf_token(other, AVATAR)}
    )
    assert resp.status_code == 403
    assert upload_count() == 1


@pytest.mark.asvs("V8.2.2")
def test_an_image_in_someone_elses_draft_cannot_be_deleted_and_looks_absent(
    app: Flask, client: FlaskClient, own_article: Article
) -> None:
    """Another editor who learns the id of an image in a draft (a leaked link) gets the 404
    of an unknown id, not a 403 that confirms it; the refusal is audited, the image stays."""
    own_article.status, own_article.published_at = "draft", None
    db.session.commit()
    path = f"/articles/{own_article.id}/images"
    assert post_file(client, path, corpus.png()).status_code == 302
    upload = only_upload()
    other = app.test_client()
    sign_in(other, "editor")
    resp = other.post(f"/uploads/{upload.id}/delete", data={"csrf_token": csrf_token(other, AVATAR)})
    assert resp.status_code == 404
    assert upload_count() == 1
    denied = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "authz.denied")
    ).all()
    assert [e.details.get("hidden") for e in denied] == [True]


@pytest.mark.asvs("V16.3.2", "V8.2.2")
def test_an_image_sent_to_someone_elses_draft_looks_absent_and_is_audited(
    app: Flask, client: FlaskClient, own_article: Article
) -> None:
    """Another editor who sends an image to a draft they cannot see (its id guessed) gets the
    404 of an unknown id, and the refusal is audited like every other change refused on a
    hidden draft (edit, delete, comment); it was a silent 404, invisible in the trail."""
    own_article.status, own_article.published_at = "draft", None
    db.session.commit()
    other = app.test_client()
    sign_in(other, "editor")
    path = f"/articles/{own_article.id}/images"
    for resp in (other.get(path), post_file(other, path, corpus.png())):
        assert resp.status_code == 404
    assert upload_count() == 0
    denied = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "authz.denied")
    ).all()
    assert [(e.details.get("hidden"), e.details.get("what")) for e in denied] == [
        (True, f"add images to article {own_article.id}")
    ] * 2
    # An id that never existed answers the same, and is nobody's draft: nothing to audit.
    assert post_file(other, "/articles/999999/images", corpus.png()).status_code == 404
    assert len(db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "authz.denied")
    ).all()) == 2


def test_removing_the_avatar_clears_it_from_the_profile(client: FlaskClient, editor: User) -> None:
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    upload = only_upload()
    client.post(f"/uploads/{upload.id}/delete", data={"csrf_token": csrf_token(client, AVATAR)})
    db.session.expire_all()
    assert db.session.get(User, editor.id).avatar_id is None
    assert "No profile photo yet" in client.get(AVATAR).get_data(as_text=True)


@pytest.mark.asvs("V2.3.3", "V8.2.2")
def test_removing_the_old_photo_during_a_replacement_keeps_the_new_one(
    app: Flask, client: FlaskClient, editor: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    old_id = only_upload().id
    token = csrf_token(client, AVATAR)
    cookie = client.get_cookie("__Host-session")
    assert cookie is not None

    def twin() -> FlaskClient:
        c = app.test_client()
        c.set_cookie("__Host-session", cookie.value, domain="localhost", secure=True)
        return c

    # The replacement pauses while it holds the user's lock, after reading the old photo.
    locked, go = threading.Event(), threading.Event()
    write = storage.write_atomic

    def paused_write(name: str, data: bytes) -> None:
        if not locked.is_set():
            locked.set()
            go.wait(10)
        write(name, data)

    monkeypatch.setattr(storage, "write_atomic", paused_write)
    statuses: dict[str, int] = {}

    def replace() -> None:
        form = {"csrf_token": token, "image": (io.BytesIO(corpus.png((40, 40))), "new.png")}
        resp = twin().post(AVATAR, data=form, content_type="multipart/form-data")
        statuses["replace"] = resp.status_code

    def remove() -> None:
        resp = twin().post(f"/uploads/{old_id}/delete", data={"csrf_token": token})
        statuses["remove"] = resp.status_code

    replacing = threading.Thread(target=replace)
    replacing.start()
    assert locked.wait(10)
    removing = threading.Thread(target=remove)
    removing.start()
    time.sleep(0.5)  # the removal reaches the database while the replacement holds the lock
    go.set()
    replacing.join(30)
    removing.join(30)
    assert statuses["replace"] == 302
    assert statuses["remove"] in (302, 404)
    new = only_upload()
    assert new.id != old_id
    assert db.session.get(User, editor.id).avatar_id == new.id  # not lost to the removal
    assert_store_consistent()


@pytest.mark.asvs("V2.3.3")
def test_an_article_deleted_during_its_image_upload_is_a_clean_404(
    app: Flask, client: FlaskClient, own_article: Article, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/articles/{own_article.id}/images"
    token = csrf_token(client, path)
    cookie = client.get_cookie("__Host-session")
    assert cookie is not None
    uploader = app.test_client()
    uploader.set_cookie("__Host-session", cookie.value, domain="localhost", secure=True)
    # The upload has passed its access check and pauses while the image is processed.
    processing, go = threading.Event(), threading.Event()
    process = services.imaging.process

    def paused_process(data: bytes, *, kind: str) -> object:
        processing.set()
        go.wait(10)
        return process(data, kind=kind)

    monkeypatch.setattr(services.imaging, "process", paused_process)
    statuses: list[int] = []

    def upload() -> None:
        form = {"csrf_token": token, "image": (io.BytesIO(corpus.png()), "late.png")}
        statuses.append(uploader.post(path, data=form).status_code)

    thread = threading.Thread(target=upload)
    thread.start()
    assert processing.wait(10)
    resp = client.post(f"/articles/{own_article.id}/delete", data={"csrf_token": token})
    assert resp.status_code == 302
    go.set()
    thread.join(30)
    assert statuses == [404]
    assert upload_count() == 0  # no row left pointing at the deleted article
    assert_store_consistent()


def test_deleting_an_article_removes_its_image_files(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    assert post_file(client, f"/articles/{own_article.id}/images", corpus.png()).status_code == 302
    files = _files(only_upload())
    delete_article(db.session.get(User, editor.id), db.session.get(Article, own_article.id))
    assert upload_count() == 0
    assert not any(f.exists() for f in files)
    assert_store_consistent()


def test_deleting_a_user_removes_their_files(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    assert post_file(client, f"/articles/{own_article.id}/images", corpus.png()).status_code == 302
    db.session.expire_all()
    files = [f for u in db.session.query(Upload).all() for f in _files(u)]
    assert len(files) == 3
    db.session.delete(db.session.get(User, editor.id))
    db.session.commit()
    assert upload_count() == 0
    assert not any(f.exists() for f in files)


def test_a_rolled_back_delete_keeps_the_files(client: FlaskClient, own_article: Article) -> None:
    assert post_file(client, f"/articles/{own_article.id}/images", corpus.png()).status_code == 302
    files = _files(only_upload())
    db.session.delete(db.session.get(Article, own_article.id))
    db.session.flush()
    db.session.rollback()
    assert upload_count() == 1
    assert all(f.is_file() for f in files)
    assert_store_consistent()


def test_a_failed_write_leaves_neither_files_nor_rows(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory()
    calls: list[str] = []
    real_write = storage.write_atomic

    def flaky_write(name: str, data: bytes) -> None:
        calls.append(name)
        if len(calls) == 2:  # the avatar's second size: the disk fills up
            raise OSError(28, "No space left on device")
        real_write(name, data)

    monkeypatch.setattr(storage, "write_atomic", flaky_write)
    import io

    with pytest.raises(services.UploadError) as refused:
        services.store_image(user, io.BytesIO(corpus.png()), kind="avatar", original_name="a.png")
    assert (refused.value.reason, refused.value.status) == ("storage", 503)
    assert isinstance(refused.value.__cause__, OSError)
    assert upload_count() == 0
    assert_store_consistent()


@pytest.mark.asvs("V16.5.2", "V16.5.1")
def test_a_full_disk_during_a_replacement_is_a_clear_503_and_keeps_the_old_photo(
    app: Flask, client: FlaskClient, editor: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    old = only_upload()
    before = client.get(f"/uploads/{old.id}").data
    real_write = storage.write_atomic
    calls: list[str] = []

    def disk_fills(name: str, data: bytes) -> None:
        calls.append(name)
        if len(calls) == 2:  # the new photo's second size
            raise OSError(28, "No space left on device")
        real_write(name, data)

    monkeypatch.setattr(storage, "write_atomic", disk_fills)
    resp = post_file(client, AVATAR, corpus.image_bytes("JPEG", (50, 50)))
    assert resp.status_code == 503
    page = resp.get_data(as_text=True)
    assert "could not be saved just now; nothing was changed" in page
    assert "No space" not in page
    assert only_upload().id == old.id
    db.session.refresh(editor)
    assert editor.avatar_id == old.id
    served = client.get(f"/uploads/{old.id}")
    assert served.status_code == 200
    assert served.data == before
    assert_store_consistent()


def test_a_file_that_cannot_be_removed_does_not_hide_the_write_error(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    def full(name: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    def read_only(name: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(storage, "write_atomic", full)
    monkeypatch.setattr(storage, "delete", read_only)
    with pytest.raises(services.UploadError) as refused:
        services.store_image(
            UserFactory(), io.BytesIO(corpus.png()), kind="avatar", original_name="a.png"
        )
    assert refused.value.status == 503
    assert upload_count() == 0


def test_a_failed_commit_removes_the_written_files(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from sqlalchemy.exc import OperationalError

    user = UserFactory()

    def failing_commit() -> None:
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    monkeypatch.setattr(db.session, "commit", failing_commit)
    with pytest.raises(OperationalError):
        services.store_image(user, io.BytesIO(corpus.png()), kind="avatar", original_name="a.png")
    monkeypatch.undo()
    assert upload_count() == 0
    assert_store_consistent()


@pytest.mark.asvs("V2.3.2", "V15.2.2")
def test_concurrent_uploads_respect_the_quota_and_stay_consistent(
    app: Flask, client: FlaskClient, own_article: Article, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "UPLOAD_QUOTA_FILES", 3)
    path = f"/articles/{own_article.id}/images"
    token = csrf_token(client, path)
    cookie = client.get_cookie("__Host-session")
    assert cookie is not None
    clients = []
    for _ in range(6):
        c = app.test_client()
        c.set_cookie("__Host-session", cookie.value, domain="localhost", secure=True)
        clients.append(c)
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def upload(c: FlaskClient) -> None:
        import io

        barrier.wait()
        resp = c.post(
            path,
            data={"csrf_token": token, "image": (io.BytesIO(corpus.png()), "p.png")},
            content_type="multipart/form-data",
        )
        statuses.append(resp.status_code)

    threads = [threading.Thread(target=upload, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) == [302, 302, 302, 422, 422, 422]
    assert upload_count() == 3
    assert_store_consistent()


@pytest.mark.asvs("V15.2.2")
def test_an_interrupted_upload_leaves_nothing_behind(live_server) -> None:  # type: ignore[no-untyped-def]
    from bastion.uploads.cleanup import check_store
    from tests.factories import PASSWORD
    from tests.support.auth import AuthActions

    live = live_server()
    with live.app.app_context():
        user = UserFactory()
        helper = live.app.test_client()
        AuthActions(helper).login(user.username, PASSWORD)
        token = csrf_token(helper, AVATAR)
        cookie = helper.get_cookie("__Host-session").value  # type: ignore[union-attr]
    boundary = "interrupted"
    payload = corpus.png() + b"\x00" * 600_000
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    host, port = live.url.removeprefix("http://").split(":")
    head = (
        f"POST {AVATAR} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: __Host-session={cookie}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.3)
    time.sleep(0.5)  # let the server notice the disconnect and unwind
    with live.app.app_context():
        report = check_store()
        assert report.consistent, report
        assert db.session.query(Upload).count() == 0
    # The server is still healthy and a complete upload from the same session works.
    with live.app.app_context():
        helper.get("/healthz")
        resp = post_file(helper, AVATAR, corpus.png())
        assert resp.status_code == 302
        assert check_store().consistent


def test_check_command_reports_and_prunes_orphans(app: Flask) -> None:
    from bastion.uploads.services import new_id

    runner = app.test_cli_runner()
    assert runner.invoke(args=["uploads", "check"]).exit_code == 0
    orphan = storage.new_name("png")
    storage.write_atomic(orphan, b"left over by a crash")
    user = UserFactory()
    row = Upload(
        id=new_id(),
        owner_id=user.id,
        kind="avatar",
        content_type="image/png",
        size=1,
        width=1,
        height=1,
        storage_name=storage.new_name("png"),
        original_name="",
    )
    db.session.add(row)
    db.session.commit()
    result = runner.invoke(args=["uploads", "check"])
    assert result.exit_code == 1
    assert f"orphan file: {orphan}" in result.output
    assert f"missing file for row: {row.storage_name}" in result.output
    result = runner.invoke(args=["uploads", "check", "--prune", "--min-age", "0"])
    assert f"pruned orphan file: {orphan}" in result.output
    assert not storage.path_for(orphan).exists()


def test_check_command_refuses_a_negative_min_age(app: Flask) -> None:
    # A negative age (a typo) was taken as "prune everything, uploads in flight too".
    orphan = storage.new_name("png")
    storage.write_atomic(orphan, b"an upload whose row is not committed yet")
    result = app.test_cli_runner().invoke(args=["uploads", "check", "--prune", "--min-age", "-1"])
    assert result.exit_code == 2
    assert "Invalid value for '--min-age'" in result.output
    assert storage.path_for(orphan).exists()


@pytest.mark.asvs("V5.3.2")
def test_prune_never_deletes_what_the_store_did_not_write(app: Flask, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A symlink or a foreign file under BASTION_UPLOAD_DIR (a shared volume, a careless
    setting) is no orphan upload: ``--prune`` leaves it, and what it points at, alone."""
    import os

    root = storage.root()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "backups").mkdir()
    (root / "cd").mkdir()
    victims = [
        outside / "keep.txt",
        outside / ("ab" + "0" * 30 + ".png"),
        outside / "target.bin",
        root / "backups" / "db.sql",
    ]
    for path in victims:
        path.write_bytes(b"not an upload")
        os.utime(path, (1, 1))  # far older than --min-age
    (root / "zz").symlink_to(outside, target_is_directory=True)
    (root / "ab").symlink_to(outside, target_is_directory=True)  # a fan-out name
    (root / "cd" / ("cd" + "1" * 30 + ".png")).symlink_to(outside / "target.bin")
    orphan = "ef" + storage.new_name("png")[2:]  # not under a fan-out name linked above
    storage.write_atomic(orphan, b"left over by a crash")
    with pytest.raises(OSError, match="symlink"):  # nothing is written through a link
        storage.write_atomic("ab" + orphan[2:], b"would land outside")

    result = app.test_cli_runner().invoke(args=["uploads", "check", "--prune", "--min-age", "0"])
    assert all(p.exists() for p in victims), result.output
    assert not (outside / ("ab" + orphan[2:])).exists()
    assert (root / "cd" / ("cd" + "1" * 30 + ".png")).is_symlink()
    assert f"pruned orphan file: {orphan}" in result.output
    assert not storage.path_for(orphan).exists()
    assert result.exit_code == 0  # foreign entries are reported, never deleted
    assert "not an upload (left alone): zz" in result.output


@pytest.mark.asvs("V5.3.2")
def test_prune_asks_again_before_deleting_a_file(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing is older than the scan: a file whose row was committed in between, or
    that was removed in between, is neither pruned nor a crash."""
    import io
    import os

    from bastion.uploads import commands
    from bastion.uploads.cleanup import StoreReport

    live = services.store_image(
        UserFactory(), io.BytesIO(corpus.png()), kind="avatar", original_name="a.png"
    )
    files = _files(live)  # the main file and its variant
    for path in files:
        os.utime(path, (1, 1))  # far older than --min-age
    orphan = storage.new_name("png")
    storage.write_atomic(orphan, b"left over by a crash")
    gone = storage.path_for(storage.new_name("png"))
    # What check_store reports when it read the rows just before this upload was committed.
    stale = StoreReport(orphan_files=[*files, gone, storage.path_for(orphan)], missing_files=[])
    monkeypatch.setattr(commands, "check_store", lambda: stale)

    result = app.test_cli_runner().invoke(args=["uploads", "check", "--prune", "--min-age", "0"])
    assert result.exception is None, result.output
    assert all(path.is_file() for path in files), result.output
    assert f"pruned orphan file: {orphan}" in result.output
    assert not storage.path_for(orphan).exists()
    assert result.exit_code == 0
