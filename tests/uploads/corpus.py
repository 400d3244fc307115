"""The attack corpus and clean samples, generated here (no binary fixtures in the repo)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import ExifTags, Image

SCRIPT = b"<script>window.__pwned=1;alert(document.domain)</script>"
GPS_MARKER = "BASTION-GPS-MARKER"


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (32, 24), mode: str = "RGB", **save: object
) -> bytes:
    im = Image.new(mode, size, "teal" if mode in ("RGB", "RGBA") else 1)
    out = io.BytesIO()
    im.save(out, fmt, **save)
    return out.getvalue()


def png(size: tuple[int, int] = (32, 24)) -> bytes:
    return image_bytes("PNG", size)


def jpeg_with_gps() -> bytes:
    """A JPEG carrying GPS coordinates and a marker in the EXIF description."""
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = GPS_MARKER
    exif[ExifTags.Base.Orientation] = 1
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.0)
    return image_bytes("JPEG", (64, 48), exif=exif, comment=GPS_MARKER.encode())


def jpeg_with_html_appended() -> bytes:
    return image_bytes("JPEG") + b"<html><body>" + SCRIPT + b"</body></html>"


def gif_js_polyglot() -> bytes:
    """GIF whose header reads ``GIF89a/*`` (width 10799) with JS in a comment and HTML after it.

    As JavaScript it is ``GIF89a/* ... */=alert(...)//``; as a GIF it decodes fine.
    """
    im = Image.new("P", (0x2A2F, 1), 0)
    out = io.BytesIO()
    im.save(out, "GIF", comment=b"*/=alert(document.domain);/*")
    data = out.getvalue()
    assert data.startswith(b"GIF89a/*")
    return data + b"*/" + SCRIPT


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def animated_gif(frames: int, size: tuple[int, int] = (8, 8)) -> bytes:
    images = [Image.new("RGB", size, (i % 256, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return out.getvalue()


def gif_growing_canvas(side: int, frames: int) -> bytes:
    """A GIF whose header says 1x1, but whose second frame, a single pixel placed at
    (side - 1, side - 1), grows the canvas to ``side`` x ``side`` for it and every later
    frame: a few hundred bytes that decode to ``frames - 1`` full-size frames."""
    out = io.BytesIO()
    out.write(b"GIF89a" + struct.pack("<HH", 1, 1) + b"\x80\x00\x00" + b"\x00" * 3 + b"\xff" * 3)
    for i in range(frames):
        at = side - 1 if i == 1 else 0
        out.write(b"\x21\xf9\x04\x00\x05\x00\x00\x00")  # graphic control: 50 ms
        out.write(b"," + struct.pack("<HHHH", at, at, 1, 1) + b"\x00")
        out.write(b"\x02\x02" + bytes([0x44 if i % 2 else 0x4C, 0x01]) + b"\x00")  # one pixel
    return out.getvalue() + b";"


def jpeg_scan_bomb(scans: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A progressive JPEG whose last scan is repeated until it has ``scans`` scans.

    libjpeg runs every one of them over the whole image (each repeat only warns), so at
    5000x5000 and 5 MB of 14-byte scans one upload cost minutes of CPU."""
    data = image_bytes("JPEG", size, progressive=True)
    last = data.rindex(b"\xff\xda")
    assert data.endswith(b"\xff\xd9")
    scan = data[last:-2]
    return data[:-2] + scan * (scans - data.count(b"\xff\xda")) + b"\xff\xd9"


def _tiff_ifd(*entries: tuple[int, int, int, bytes]) -> bytes:
    """One big-endian TIFF IFD: (tag, type, count, 4-byte value or offset) entries, no next."""
    body = b"".join(struct.pack(">HHI", *entry[:3]) + entry[3] for entry in entries)
    return struct.pack(">H", len(entries)) + body + struct.pack(">I", 0)


def exif_with_mistyped_tag(tag: int, *, in_gps: bool) -> bytes:
    """EXIF (Orientation 6, so it is applied) where ``tag`` holds a value of the wrong type.

    Pillow reads it, but ``ImageOps.exif_transpose`` writes the block back without the
    orientation and fails in ``struct.pack`` (``struct.error``). ``in_gps`` puts the tag in
    the GPS IFD with three rationals; otherwise in IFD0 with text.
    """
    ifd0 = _tiff_ifd(
        (0x010F if in_gps else tag, 2, 4, b"cam\x00"),  # Make (or the mistyped tag): text
        (ExifTags.Base.Orientation, 3, 1, struct.pack(">HH", 6, 0)),
        (ExifTags.IFD.GPSInfo, 4, 1, struct.pack(">I", 50)),  # the GPS IFD right after IFD0
    )
    gps = _tiff_ifd(
        (ExifTags.GPS.GPSLatitudeRef, 2, 2, b"N\x00\x00\x00"),
        (tag if in_gps else ExifTags.GPS.GPSLatitude, 5, 3, struct.pack(">I", 80)),
    )
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + gps + struct.pack(">6I", 1, 1, 2, 1, 3, 1)
    assert len(tiff) == 80 + 24
    return b"Exif\x00\x00" + tiff


def jpeg_with_broken_exif() -> bytes:
    """GPSDifferential (a SHORT) holding three rationals (as in the review's crash sample)."""
    return image_bytes(
        "JPEG", exif=exif_with_mistyped_tag(ExifTags.GPS.GPSDifferential, in_gps=True)
    )


def webp_with_broken_exif() -> bytes:
    """PlanarConfiguration (a SHORT) holding text (as in the review's crash sample)."""
    return image_bytes(
        "WEBP", exif=exif_with_mistyped_tag(ExifTags.Base.PlanarConfiguration, in_gps=False)
    )


def gif_with_cut_frame() -> bytes:
    """A GIF whose trailer is replaced by the start of a second frame with no descriptor:
    counting frames (``n_frames``) reads past the end (``struct.error``)."""
    data = image_bytes("GIF", mode="P")
    assert data.endswith(b";")
    return data[:-1] + b","


# Crafted files on which Pillow raised ``struct.error`` (once a 500, never audited).
STRUCT_ERRORS = [
    ("jpeg-broken-exif", jpeg_with_broken_exif()),
    ("webp-broken-exif", webp_with_broken_exif()),
    ("gif-cut-frame", gif_with_cut_frame()),
]

HTML = b"<!doctype html><html><body>" + SCRIPT + b"</body></html>"
JS = b"alert(document.domain);window.__pwned=1;"
PHP = b"<?php system($_GET['cmd']); ?>"
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
    b"<script>alert(2)</script><foreignObject><body>x</body></foreignObject></svg>"
)

# (case id, bytes, reason the service gives)
REFUSED = [
    ("html-as-jpg", HTML, "not_an_image"),
    ("js-as-jpg", JS, "not_an_image"),
    ("php-as-jpg", PHP, "not_an_image"),
    ("svg-as-jpg", SVG, "not_an_image"),
    ("jpeg-magic-then-html", b"\xff\xd8\xff\xe0" + HTML, "corrupt"),
    ("bomb-50000x50000", png_declaring(50_000, 50_000), "too_many_pixels"),
    ("bomb-6000x6000", png_declaring(6_000, 6_000), "too_many_pixels"),
    ("truncated-png", png((200, 200))[:-40], "corrupt"),
    ("truncated-jpeg", image_bytes("JPEG", (300, 200))[:400], "corrupt"),
    ("png-bad-crc", png()[:30] + b"\x00\x00\x00\x00" + png()[34:], "corrupt"),
    ("gif-too-many-frames", animated_gif(101), "too_many_frames"),
    ("jpeg-scan-bomb", jpeg_scan_bomb(500), "too_many_scans"),
    *((case, data, "corrupt") for case, data in STRUCT_ERRORS),
]


def sideways_photo(fmt: str = "JPEG", **save: object) -> bytes:
    """A 60x20 photo, red left half and blue right, with EXIF Orientation 6 (a phone held
    upright): shown as the camera meant, it is 20x60 with red on top."""
    im = Image.new("RGB", (60, 20), "blue")
    im.paste((255, 0, 0), (0, 0, 30, 20))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    out = io.BytesIO()
    im.save(out, fmt, exif=exif, **save)
    return out.getvalue()


def sideways_mpo() -> bytes:
    """The sideways photo as an MPO with a second frame, as phones write a JPEG with an HDR
    gain map or a depth map (Pillow opens it as JPEG with two frames)."""
    return sideways_photo("MPO", save_all=True, append_images=[Image.new("RGB", (60, 20))])


def png_16bit_grey(value: int, *, transparent: int | None = None) -> bytes:
    """A 40x30 16-bit greyscale PNG of ``value`` (0-65535), the left half ``transparent``
    (a tRNS grey) when given."""
    im = Image.new("I;16", (40, 30), value)
    save: dict[str, object] = {}
    if transparent is not None:
        im.paste(transparent, (0, 0, 20, 30))
        save["transparency"] = transparent
    out = io.BytesIO()
    im.save(out, "PNG", **save)
    return out.getvalue()
