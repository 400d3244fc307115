"""Content disarm and reconstruction instead of antivirus; uploads isolated by CSP sandbox (V5.4.3, V3.5.4)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, PngImagePlugin

from bastion.uploads import imaging
from tests.uploads.conftest import AVATAR, only_upload, post_file, sign_in
from tests.uploads.corpus import image_bytes, png

# The industry-standard antivirus test string (harmless by definition).
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def _png_with_text_chunk(payload: bytes) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", payload.decode("latin-1"))
    out = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(out, "PNG", pnginfo=info)
    return out.getvalue()


CARRIERS = {
    "png-appended": png() + EICAR,
    "png-text-chunk": _png_with_text_chunk(EICAR),
    "jpeg-comment": image_bytes("JPEG", (40, 30), comment=EICAR),
    "gif-appended": image_bytes("GIF", (40, 30)) + EICAR,
    "webp-appended": image_bytes("WEBP", (40, 30)) + EICAR,
}


@pytest.mark.asvs("V5.4.3")
@pytest.mark.parametrize("name", list(CARRIERS))
def test_re_encoding_removes_an_eicar_payload(name: str) -> None:
    data = CARRIERS[name]
    assert EICAR in data
    for kind in ("article", "avatar"):
        clean = imaging.process(data, kind=kind)
        assert EICAR not in clean.data
        assert b"EICAR" not in clean.data
        assert all(b"EICAR" not in v for v in clean.variants.values())


@pytest.mark.asvs("V5.4.3", "V3.5.4")
def test_uploaded_eicar_carrier_is_stored_and_served_clean_and_sandboxed(
    client: FlaskClient, app: Flask
) -> None:
    sign_in(client, "viewer")
    resp = post_file(client, AVATAR, CARRIERS["png-appended"])
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:500]
    upload = only_upload()
    stored = [p.read_bytes() for p in Path(app.config["UPLOAD_DIR"]).rglob("*") if p.is_file()]
    assert stored and all(b"EICAR" not in data for data in stored)
    for query in ("", "?size=64"):
        served = client.get(f"/uploads/{upload.id}{query}")
        assert served.status_code == 200
        assert b"EICAR" not in served.get_data()
        # Origin isolation for user content: a sandboxed, script-less opaque origin, never
        # rendered as anything but the stored image type.
        csp = served.headers["Content-Security-Policy"]
        assert csp.startswith("sandbox") and "default-src 'none'" in csp
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        assert served.mimetype in ("image/png", "image/jpeg")  # avatars become JPEG
        assert served.headers["Content-Disposition"].startswith("inline")
