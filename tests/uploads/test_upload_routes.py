"""Uploading through the real forms: the attack corpus, file names, clean results."""

from __future__ import annotations

import io
import re
import unicodedata
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import select
from werkzeug.http import parse_options_header

from bastion.extensions import db
from bastion.models import Article, Upload, User
from bastion.uploads import storage
from tests.support.auth import FOREIGN_NEXT
from tests.uploads import corpus
from tests.uploads.conftest import (
    AVATAR,
    assert_store_consistent,
    only_upload,
    post_file,
    rejections,
    upload_count,
)

# As in production (see bastion.uploads.imaging), Pillow's bomb warning is an error. Pillow
# also warns while reading the broken EXIF in corpus.STRUCT_ERRORS; that warning is expected.
pytestmark = [
    pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning"),
    pytest.mark.filterwarnings("ignore:Metadata Warning:UserWarning"),
]


def _images(article: Article) -> str:
    return f"/articles/{article.id}/images"


@pytest.mark.asvs("V5.2.2", "V1.3.4", "V16.3.3")
def test_attack_corpus_is_refused_clearly_and_audited(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    # One signed-in session for the whole corpus (each case is also a unit test in
    # test_imaging); every refusal must add exactly one audit event with its reason.
    for number, (case, data, reason) in enumerate(corpus.REFUSED, start=1):
        resp = post_file(
            client, _images(own_article), data, filename="holiday.jpg", content_type="image/jpeg"
        )
        assert resp.status_code in (415, 422), case
        page = resp.get_data(as_text=True)
        assert 'class="error"' in page, case
        assert "<script>window.__pwned" not in page
        events = rejections()
        assert len(events) == number, case
        assert events[-1].details["reason"] == reason, case
        assert events[-1].actor_id == editor.id
    assert upload_count() == 0
    assert_store_consistent()


@pytest.mark.asvs("V5.2.2", "V16.3.3")
@pytest.mark.parametrize(
    "data", [d for _, d in corpus.STRUCT_ERRORS], ids=[c for c, _ in corpus.STRUCT_ERRORS]
)
def test_files_that_break_the_decoder_are_refused_as_corrupt_on_both_forms(
    client: FlaskClient, editor: User, own_article: Article, data: bytes
) -> None:
    # Pillow raised struct.error on these (broken EXIF, a cut-off GIF frame): once a 500
    # with no audit event; now the same clear refusal as any other damaged file.
    for number, (path, kind) in enumerate(
        [(AVATAR, "avatar"), (_images(own_article), "article")], start=1
    ):
        resp = post_file(client, path, data, filename="photo.jpg", content_type="image/jpeg")
        assert resp.status_code == 422, path
        assert "The image could not be read" in resp.get_data(as_text=True)
        events = rejections()
        assert len(events) == number, path
        assert (events[-1].details["reason"], events[-1].details["kind"]) == ("corrupt", kind)
        assert events[-1].actor_id == editor.id
    assert upload_count() == 0
    assert_store_consistent()


@pytest.mark.asvs("V5.2.2")
def test_spoofed_content_type_and_name_do_not_decide_the_type(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    resp = post_file(client, AVATAR, corpus.HTML, filename="me.png", content_type="image/png")
    assert resp.status_code == 415
    assert "Only JPEG, PNG, GIF and WebP" in resp.get_data(as_text=True)
    # And a real PNG sent as "text/html" named .jpg is stored as the PNG it is.
    resp = post_file(
        client, _images(own_article), corpus.png(), filename="me.jpg", content_type="text/html"
    )
    assert resp.status_code == 302
    assert only_upload().content_type == "image/png"


@pytest.mark.asvs("V5.2.2")
def test_a_non_image_extension_is_refused_even_with_image_content(
    client: FlaskClient, editor: User
) -> None:
    names = ["shell.php", "logo.svg", "page.html", "x.jpg.exe"]
    for filename in names:
        resp = post_file(client, AVATAR, corpus.png(), filename=filename)
        assert resp.status_code == 415, filename
        assert "JPEG, PNG, GIF and WebP images" in resp.get_data(as_text=True)
    assert [e.details["reason"] for e in rejections()] == ["extension"] * len(names)
    assert upload_count() == 0


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize(
    "filename",
    [
        "a" * 300 + ".php",
        # Cut at 255 characters, this one would end in ".png".
        "x" * 251 + ".png" + "y" * 200,
    ],
    ids=["long-stem", "long-extension"],
)
def test_a_long_name_cannot_cut_its_extension_off(
    client: FlaskClient, editor: User, filename: str
) -> None:
    # Names are kept to 255 characters; the rule on extensions was applied to what was
    # kept, so a long enough name lost its ".php", or gained a ".png", and passed.
    resp = post_file(client, AVATAR, corpus.png(), filename=filename)
    assert resp.status_code == 415
    assert "JPEG, PNG, GIF and WebP images" in resp.get_data(as_text=True)
    assert [e.details["reason"] for e in rejections()] == ["extension"]
    assert upload_count() == 0


def test_a_long_name_is_shortened_in_its_stem(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    filename = "holiday " * 40 + ".jpeg"
    resp = post_file(client, _images(own_article), corpus.png(), filename=filename)
    assert resp.status_code == 302
    kept = only_upload().original_name
    assert len(kept) == 255 and kept.startswith("holiday holiday") and kept.endswith(".jpeg")


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize(
    "make", [corpus.gif_js_polyglot, corpus.jpeg_with_html_appended], ids=["gif-js", "jpeg-html"]
)
def test_polyglot_is_stored_only_as_a_clean_reencoding(
    client: FlaskClient,
    editor: User,
    own_article: Article,
    make,  # type: ignore[no-untyped-def]
) -> None:
    resp = post_file(client, _images(own_article), make(), filename="funny.gif")
    assert resp.status_code == 302
    upload = only_upload()
    served = client.get(f"/uploads/{upload.id}")
    assert served.status_code == 200
    body = served.get_data()
    assert b"alert(" not in body
    assert b"<script" not in body.lower()
    Image.open(io.BytesIO(body)).load()


@pytest.mark.asvs("V5.2.2")
def test_gps_exif_in_the_upload_is_absent_from_the_served_file(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    resp = post_file(client, _images(own_article), corpus.jpeg_with_gps(), filename="trip.jpg")
    assert resp.status_code == 302
    body = client.get(f"/uploads/{only_upload().id}").get_data()
    assert corpus.GPS_MARKER.encode() not in body
    with Image.open(io.BytesIO(body)) as im:
        exif = im.getexif()
        assert not exif
        assert not exif.get_ifd(0x8825)


def test_a_phone_photo_is_served_upright_and_without_its_gain_map(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    # A phone's JPEG with an HDR gain map (an MPO of two frames) and Orientation 6: stored
    # 60x20 on its side until the second frame stopped making it look like an animation.
    resp = post_file(
        client,
        _images(own_article),
        corpus.sideways_mpo(),
        filename="PXL.jpg",
        content_type="image/jpeg",
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    upload = only_upload()
    assert (upload.content_type, upload.width, upload.height) == ("image/jpeg", 20, 60)
    with Image.open(io.BytesIO(client.get(f"/uploads/{upload.id}").get_data())) as im:
        assert (im.format, im.size, getattr(im, "n_frames", 1)) == ("JPEG", (20, 60), 1)
        top = im.convert("RGB").getpixel((10, 2))
    assert isinstance(top, tuple) and top[0] > 200 > top[2]  # the red half is on top


@pytest.mark.asvs("V5.2.2")
def test_colour_profiles_are_applied_and_a_broken_one_is_no_500(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    # An iPhone's Display P3 photo is stored in sRGB (what browsers assume of a file with no
    # profile); a photo whose profile is garbage is stored as it was before, not a 500.
    p3 = corpus.with_profile("PNG", (230, 60, 40), corpus.display_p3_profile())
    broken = corpus.with_profile("JPEG", (230, 60, 40), b"garbage" * 100, quality=95)
    for path, data in [
        (_images(own_article), p3),
        (AVATAR, broken),
        (_images(own_article), broken),
    ]:
        resp = post_file(client, path, data, filename="IMG_0001.png")
        assert resp.status_code == 302, resp.get_data(as_text=True)
    db.session.expire_all()
    stored = {}
    for upload in db.session.scalars(select(Upload).where(Upload.article_id.is_not(None))):
        with Image.open(io.BytesIO(client.get(f"/uploads/{upload.id}").get_data())) as im:
            assert "icc_profile" not in im.info
            stored[im.format] = im.convert("RGB").getpixel((20, 15))
    assert stored["PNG"] == (250, 31, 14)  # the P3 colour, converted
    assert all(abs(a - b) <= 4 for a, b in zip(stored["JPEG"], (230, 60, 40), strict=True))
    assert_store_consistent()


HOSTILE_NAMES = [  # article images keep their type: .png download names
    ("../../../etc/passwd.png", "passwd.png"),
    ("/var/www/static/x.png", "x.png"),
    ("C:\\Windows\\System32\\evil.png", None),  # multipart unescapes the backslashes
    ("evil.php\x00.png", "evil.php.png"),
    ("CON", "image.png"),
    ("NUL.jpg", "image.png"),
    ("\u00fc" * 300 + ".png", None),
]


@pytest.mark.asvs("V5.3.2", "V5.4.1", "V5.4.2")
def test_hostile_file_names_never_reach_the_file_system(
    app: Flask, client: FlaskClient, editor: User, own_article: Article
) -> None:
    # Article images: a profile photo is served under a name of its own (test_names).
    seen: set[str] = set()
    for filename, download in HOSTILE_NAMES:
        resp = post_file(client, _images(own_article), corpus.png(), filename=filename)
        assert resp.status_code == 302, filename
        db.session.expire_all()
        (upload,) = [u for u in db.session.scalars(select(Upload)) if u.id not in seen]
        seen.add(upload.id)
        assert storage.NAME_RE.match(upload.storage_name)
        path = storage.path_for(upload.storage_name)
        assert path.is_file()
        assert path.resolve().is_relative_to(app.config["UPLOAD_DIR"])
        assert not any(c in upload.original_name for c in "/\\\x00\r\n")
        assert len(upload.original_name) <= 255
        disposition = client.get(f"/uploads/{upload.id}").headers["Content-Disposition"]
        assert disposition.startswith("inline; ")
        assert not any(c in disposition for c in "\r\n\x00")
        if download is not None:
            assert f"filename={download}" in disposition or f'filename="{download}"' in disposition
    assert_store_consistent()


@pytest.mark.asvs("V5.4.1", "V5.4.2")
@pytest.mark.parametrize(
    "filename",
    [
        "\uff0e\uff0e\uff0fetc\uff0fpasswd.png",  # fullwidth full stops and solidus
        "\u2025\ufe68\u2025\ufe68boot.png",  # two dot leader, small reverse solidus
        "\ufe52\ufe52\u2215\uff3cx.png",  # small full stops, division slash, fullwidth backslash
    ],
)
def test_lookalike_separators_never_make_a_download_path(
    client: FlaskClient, editor: User, own_article: Article, filename: str
) -> None:
    # Werkzeug adds an ASCII ``filename=`` fallback made by NFKD, which turns these
    # compatibility characters into ``.``, ``/`` and ``\``: ``filename="../etc/passwd.jpg"``.
    resp = post_file(client, _images(own_article), corpus.png(), filename=filename)
    assert resp.status_code == 302
    disposition = client.get(f"/uploads/{only_upload().id}").headers["Content-Disposition"]
    kind, params = parse_options_header(disposition)
    assert kind == "inline"
    for key in ("filename", "filename*"):
        name = unquote(params.get(key, "").removeprefix("UTF-8''"))
        assert not any(c in unicodedata.normalize("NFKD", name) for c in "/\\"), disposition
        assert not name.startswith("."), disposition


@pytest.mark.asvs("V5.2.2")
def test_avatar_replaces_the_old_one_and_comes_in_fixed_sizes(
    client: FlaskClient, editor: User
) -> None:
    assert post_file(client, AVATAR, corpus.image_bytes("JPEG", (500, 300))).status_code == 302
    first = only_upload()
    assert (
        post_file(client, AVATAR, corpus.image_bytes("PNG", (90, 200), "RGBA")).status_code == 302
    )
    second = only_upload()
    assert second.id != first.id
    assert (second.width, second.height) == (256, 256)
    assert client.get(f"/uploads/{first.id}").status_code == 404
    small = client.get(f"/uploads/{second.id}?size=64")
    assert Image.open(io.BytesIO(small.get_data())).size == (64, 64)
    assert client.get(f"/uploads/{second.id}?size=300").status_code == 404
    page = client.get(AVATAR).get_data(as_text=True)
    assert f"/uploads/{second.id}" in page
    assert_store_consistent()


def test_missing_file_field_is_a_clear_400(client: FlaskClient, editor: User) -> None:
    from tests.support.auth import csrf_token

    resp = client.post(
        AVATAR, data={"csrf_token": csrf_token(client, AVATAR)}, content_type="multipart/form-data"
    )
    assert resp.status_code == 400
    assert "Choose an image file" in resp.get_data(as_text=True)


@pytest.mark.asvs("V3.5.1")
def test_upload_without_csrf_token_is_refused(client: FlaskClient, editor: User) -> None:
    resp = client.post(
        AVATAR,
        data={"image": (io.BytesIO(corpus.png()), "a.png")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 400
    assert upload_count() == 0


def test_upload_pages_render_finished(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    page = client.get(AVATAR).get_data(as_text=True)
    assert "<h1>Profile photo</h1>" in page
    assert "No profile photo yet" in page
    assert 'enctype="multipart/form-data"' in page
    assert 'for="avatar-image"' in page
    page = client.get(_images(own_article)).get_data(as_text=True)
    assert "No images yet" in page
    assert 'for="article-image"' in page


@pytest.mark.asvs("V2.2.1")
def test_a_refused_upload_changes_nothing_stored(client: FlaskClient, editor: User) -> None:
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    before = only_upload()
    resp = post_file(client, AVATAR, corpus.SVG, filename="me.png")
    assert resp.status_code == 415
    after = only_upload()
    assert after.id == before.id
    from bastion.extensions import db

    assert db.session.get(User, editor.id).avatar_id == before.id
    assert client.get(f"/uploads/{before.id}").status_code == 200
    assert_store_consistent()


def test_article_images_page_lists_images_with_markdown(
    client: FlaskClient, own_article: Article
) -> None:
    post_file(
        client, _images(own_article), corpus.png(), filename="<img src=x onerror=alert(1)>.png"
    )
    upload = only_upload()
    page = client.get(_images(own_article)).get_data(as_text=True)
    assert f"![&lt;img src=x onerror=alert(1)&gt;](/uploads/{upload.id})" in page
    assert "<img src=x" not in page
    assert f'action="/uploads/{upload.id}/delete"' in page


@pytest.mark.asvs("V1.3.5")
def test_the_markdown_snippet_stays_one_image_whatever_the_name(
    client: FlaskClient, own_article: Article
) -> None:
    """A bracket in the file name used to end the alt text early, so the pasted snippet
    showed as text instead of the image."""
    import html

    from bastion.content.rendering import render_markdown

    post_file(client, _images(own_article), corpus.png(), filename="a]b [c] d.png")
    upload = only_upload()
    page = client.get(_images(own_article)).get_data(as_text=True)
    snippet = html.unescape(re.search(r"<code>(!\[.*?\]\(/uploads/\w+\))</code>", page).group(1))  # type: ignore[union-attr]
    rendered = render_markdown(snippet)
    assert rendered.count("<img") == 1, rendered
    assert f'src="/uploads/{upload.id}"' in rendered
    assert 'alt="a]b [c] d"' in rendered


def _form_next(page: str, action: str) -> str | None:
    """The ``next`` the upload form posting to ``action`` carries, or None."""
    import html

    form = re.search(
        rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S
    )
    assert form, f"no form posting to {action}"
    found = re.search(r'<input type="hidden" name="next" value="([^"]*)">', form.group(1))
    return html.unescape(found.group(1)) if found else None


@pytest.mark.parametrize("origin", ["account", "article"])
def test_a_refused_upload_keeps_the_page_it_was_started_from(
    client: FlaskClient, own_article: Article, origin: str
) -> None:
    """The form shown again after a refusal used to drop ``next``: the retry that worked
    then landed on the bare upload page, not on the account or article edit page."""
    if origin == "account":
        path, back = AVATAR, "/account"
    else:
        path, back = _images(own_article), f"/articles/{own_article.id}/edit"
    refused = post_file(client, path, b"not an image", filename="me.png", next=back)
    assert refused.status_code in (415, 422)
    kept = _form_next(refused.get_data(as_text=True), path)
    assert kept == back
    retried = post_file(client, path, corpus.png(), next=kept)
    assert retried.status_code == 302 and retried.headers["Location"] == back


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize("hostile", FOREIGN_NEXT)
def test_a_refused_upload_does_not_echo_a_foreign_next(
    client: FlaskClient, editor: User, hostile: str
) -> None:
    refused = post_file(client, AVATAR, b"not an image", filename="me.png", next=hostile)
    assert refused.status_code in (415, 422)
    page = refused.get_data(as_text=True)
    assert _form_next(page, AVATAR) is None
    assert "evil.example" not in page and "javascript:" not in page
