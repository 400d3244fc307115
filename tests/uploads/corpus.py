"""The attack corpus and clean samples, generated here (no binary fixtures in the repo)."""

from __future__ import annotations

import io
import itertools
import random
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
    return image_bytes("JPEG", (64, 48), exif=gps_exif(), comment=GPS_MARKER.encode())


def gps_exif() -> Image.Exif:
    """EXIF with GPS coordinates and ``GPS_MARKER`` in its description."""
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = GPS_MARKER
    exif[ExifTags.Base.Orientation] = 1
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.0)
    return exif


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


def gif_of_noise(side: int, frames: int) -> bytes:
    """A GIF of ``frames`` frames of one 256-colour noise, each later frame differing from
    the one before it in a single pixel: small, as a GIF stores only what changed, yet
    every frame is a whole ``side`` x ``side`` picture to re-encode."""
    noise = random.Random(side * frames)
    first = Image.frombytes("P", (side, side), noise.randbytes(side * side))
    first.putpalette(noise.randbytes(768))
    images = [first]
    for i in range(1, frames):
        images.append(images[-1].copy())
        images[-1].putpixel((0, 0), i % 256)
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return out.getvalue()


def gif_of(images: list[Image.Image]) -> bytes:
    """An animated GIF of RGB or RGBA ``images``, each frame drawn on a cleared canvas."""
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0,
                   disposal=2)
    return out.getvalue()


def _square(side: int, colour: str, at: tuple[int, int], size: int, mode: str,
            background: tuple[int, ...]) -> Image.Image:
    im = Image.new(mode, (side, side), background)
    im.paste(colour, (at[0], at[1], at[0] + size, at[1] + size))
    return im


def gif_of_sprite_over_clear(frames: int = 6, side: int = 48) -> bytes:
    """A red square moving over a transparent background: each frame leaves clear again the
    pixels the square covered in the one before."""
    return gif_of([_square(side, "red", (6 * i, 3 * i), 12, "RGBA", (0, 0, 0, 0))
                   for i in range(frames)])


def gif_of_hole_moving(frames: int = 6, side: int = 48) -> bytes:
    """A transparent square moving over an opaque striped background."""
    images = []
    for i in range(frames):
        im = Image.new("RGBA", (side, side), (0, 0, 255, 255))
        for x in range(0, side, 8):
            im.paste((255, 255, 0, 255), (x, 0, x + 4, side))
        im.paste((0, 0, 0, 0), (5 * i, 4 * i, 5 * i + 10, 4 * i + 10))
        images.append(im)
    return gif_of(images)


def gif_clearing_up(frames: int = 6, side: int = 48) -> bytes:
    """Opaque frames with a transparent corner that shrinks, frame by frame, and a square
    that changes colour: transparency changes, yet no pixel ever turns transparent."""
    images = []
    for i in range(frames):
        im = Image.new("RGBA", (side, side), (0, 128, 0, 255))
        im.paste((0, 0, 0, 0), (0, 0, side // 2 - 3 * i, side // 2 - 3 * i))
        im.paste((255, 0, 255, 255) if i % 2 else (255, 255, 255, 255), (30, 30, 40, 40))
        images.append(im)
    return gif_of(images)


def gif_of_few_colours(frames: int = 6, side: int = 48) -> bytes:
    """An opaque animation: a white square moving over a red and blue background."""
    images = []
    for i in range(frames):
        im = Image.new("RGB", (side, side), (255, 0, 0))
        im.paste((0, 0, 255), (0, side // 2, side, side))
        im.paste((255, 255, 255), (5 * i, 5 * i, 5 * i + 8, 5 * i + 8))
        images.append(im)
    return gif_of(images)


def _lzw_one_pixel(index: int) -> bytes:
    """A GIF image's data for one pixel of ``index``: codes clear, the pixel, end (9 bits)."""
    bits = 256 | index << 9 | 257 << 18
    return b"\x08\x04" + bits.to_bytes(4, "little") + b"\x00"  # min code size 8, 4 bytes


def gif_of_noise_clearing(side: int, frames: int) -> bytes:
    """``side`` x ``side`` noise, then ``frames - 1`` one-pixel frames, each disposed of
    (restored to transparent) once shown: every frame is the noise with one more transparent
    pixel. The upload stores the noise once and a few bytes a frame; no frame is the last
    one with only its changes, as pixels turn transparent."""
    noise = random.Random(side * frames)
    first = Image.frombytes("P", (side, side), bytes(b % 255 for b in noise.randbytes(side * side)))
    first.putpalette(noise.randbytes(768))
    out = io.BytesIO()
    first.save(out, "GIF", transparency=255, duration=50, loop=0)
    data = out.getvalue()
    assert data.endswith(b";")
    tail = io.BytesIO()
    for i in range(1, frames):
        # Graphic control: restore to background (2), transparent index 255, 50 ms.
        tail.write(b"\x21\xf9\x04\x09\x05\x00\xff\x00")
        tail.write(b"," + struct.pack("<HHHH", i % side, i // side, 1, 1) + b"\x00")
        tail.write(_lzw_one_pixel(i % 255))
    return data[:-1] + tail.getvalue() + b";"


def webp_of_noise_tiles(side: int, frames: int) -> bytes:
    """A lossless WebP animation whose frames alternate between two pictures, each one
    16x16 tile of noise repeated: a small file (lossless WebP refers back to the repeats),
    but noise to an encoder of lossy WebP, as every frame is once re-encoded."""
    noise = random.Random(side * frames)
    pictures = []
    for _ in range(2):
        tile = Image.frombytes("RGB", (16, 16), noise.randbytes(16 * 16 * 3))
        picture = Image.new("RGB", (side, side))
        for x, y in itertools.product(range(0, side, 16), repeat=2):
            picture.paste(tile, (x, y))
        pictures.append(picture)
    images = [pictures[i % 2] for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "WEBP", save_all=True, append_images=images[1:], duration=50,
                   lossless=True)
    return out.getvalue()


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


def scanned_page(mode: str = "1") -> bytes:
    """An A4 page scanned at 300 dpi (2480x3508) as 1-bit dithering of uneven grey, the way
    scanners store a page: about 1 MB of PNG, nearly incompressible. ``mode`` is the mode
    it is saved in ("L" and "RGB" hold only 0 and 255)."""
    shades = random.Random(2480)
    grey = Image.frombytes("L", (31, 44), bytes(shades.randrange(90, 230) for _ in range(31 * 44)))
    page = grey.resize((2480, 3508), Image.Resampling.BICUBIC).convert("1")  # Floyd-Steinberg
    return image_bytes_of(page if mode == "1" else page.convert(mode), "PNG")


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


# Colour profiles, written by hand (Pillow can only create sRGB, LAB and XYZ ones).
D50 = (0.9642, 1.0, 0.8249)
# Apple's Display P3 primaries, adapted to the D50 of the profile connection space.
DISPLAY_P3_PRIMARIES = (
    (0.515121, 0.241196, -0.001053),
    (0.291977, 0.692245, 0.041885),
    (0.157104, 0.066574, 0.784073),
)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: tuple[float, float, float]) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + b"".join(_s15(v) for v in xyz)


def _srgb_curve() -> bytes:
    """The sRGB tone curve as a parametric curve (function type 3)."""
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para\x00\x00\x00\x00\x00\x03\x00\x00" + b"".join(_s15(p) for p in params)


def _gamma_curve(gamma: float) -> bytes:
    return b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256)) + b"\x00\x00"


def icc_profile(
    space: bytes, tags: dict[bytes, bytes], *, cls: bytes = b"mntr", pcs: bytes = b"XYZ "
) -> bytes:
    """An ICC v2 profile of ``space`` (``RGB ``, ``GRAY``, ``CMYK``) with these tags."""
    text = b"bastion test profile\x00"
    tags = {
        b"desc": b"desc\x00\x00\x00\x00" + struct.pack(">I", len(text)) + text + b"\x00" * 79,
        b"wtpt": _xyz_tag(D50),
        b"cprt": b"text\x00\x00\x00\x00none\x00",
        **tags,
    }
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags.items():
        data += b"\x00" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"\x00" * 4
        + struct.pack(">I", 0x02100000)
        + cls
        + space
        + pcs
        + b"\x00" * 12
        + b"acsp"
        + b"\x00" * 24
        + struct.pack(">I", 0)
        + b"".join(_s15(v) for v in D50)
        + b"\x00" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def display_p3_profile() -> bytes:
    """Display P3 as an iPhone embeds it: P3 primaries and the sRGB tone curve."""
    red, green, blue = DISPLAY_P3_PRIMARIES
    curve = _srgb_curve()
    return icc_profile(
        b"RGB ",
        {
            b"rXYZ": _xyz_tag(red),
            b"gXYZ": _xyz_tag(green),
            b"bXYZ": _xyz_tag(blue),
            b"rTRC": curve,
            b"gTRC": curve,
            b"bTRC": curve,
        },
    )


def profile_without_tone_curves() -> bytes:
    """Display P3's primaries and no tone curves: readable, but no transform can be built."""
    red, green, blue = DISPLAY_P3_PRIMARIES
    return icc_profile(
        b"RGB ", {b"rXYZ": _xyz_tag(red), b"gXYZ": _xyz_tag(green), b"bXYZ": _xyz_tag(blue)}
    )


def linear_grey_profile() -> bytes:
    """A greyscale profile whose values are linear light (gamma 1.0): 50 % grey is 188 in sRGB."""
    return icc_profile(b"GRAY", {b"kTRC": _gamma_curve(1.0)})


def cmyk_profile(inks: dict[tuple[int, int, int, int], tuple[float, float, float]]) -> bytes:
    """A CMYK printer profile (a 2x2x2x2 lut16 to Lab) whose solid inks print as ``inks``
    say (Lab), and any other corner as a naive conversion would."""

    def lab16(lab: tuple[float, float, float]) -> bytes:
        lightness, a, b = lab
        return struct.pack(
            ">3H", round(lightness * 652.8), round((a + 128) * 256), round((b + 128) * 256)
        )

    grid = b""
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    corner = (c, m, y, k)
                    if corner in inks:
                        grid += lab16(inks[corner])
                    else:
                        rgb = tuple(round(255 * (1 - v) * (1 - k)) for v in (c, m, y))
                        grid += lab16(_srgb_to_lab(rgb))  # type: ignore[arg-type]
    identity = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut = (
        b"mft2\x00\x00\x00\x00"
        + bytes([4, 3, 2, 0])
        + identity
        + struct.pack(">HH", 2, 2)
        + struct.pack(">2H", 0, 65535) * 4
        + grid
        + struct.pack(">2H", 0, 65535) * 3
    )
    return icc_profile(b"CMYK", {b"A2B0": lut}, cls=b"prtr", pcs=b"Lab ")


def rgb_table_profile(
    corners: dict[tuple[int, int, int], tuple[float, float, float]],
    *, declared: tuple[int, ...] = (2, 2, 2), precision: int = 2,
) -> bytes:
    """A v4 RGB profile whose one table is a 2x2x2 A-to-B grid (``mAB``) to Lab: the
    corners print as ``corners`` say (Lab), any other as sRGB would. ``declared`` and
    ``precision`` are what its header claims of the grid, whatever follows."""
    grid = b""
    for rgb in itertools.product((0, 1), repeat=3):
        lightness, a, b = corners.get(rgb) or _srgb_to_lab(tuple(255 * v for v in rgb))  # type: ignore[arg-type]
        grid += struct.pack(
            ">3H", round(lightness * 655.35), round((a + 128) * 257), round((b + 128) * 257)
        )
    identity = b"curv\x00\x00\x00\x00" + struct.pack(">I", 0)
    clut = bytes([*declared] + [0] * (16 - len(declared))) + bytes([precision, 0, 0, 0]) + grid
    b_curves, a_curves = 32, 32 + 3 * len(identity)
    at = a_curves + 3 * len(identity)
    table = (
        b"mAB \x00\x00\x00\x00" + bytes([3, 3, 0, 0])
        + struct.pack(">5I", b_curves, 0, 0, at, a_curves)
        + identity * 6 + clut
    )
    return _v4(icc_profile(b"RGB ", {b"A2B0": table}, pcs=b"Lab "))


def oversized_grid_profile() -> bytes:
    """An RGB profile of 400 bytes whose lut16 declares a 255-point grid of 15 channels:
    littlecms allocates the half gigabyte, zeroed, before finding the table is not there."""
    identity = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut = (
        b"mft2\x00\x00\x00\x00" + bytes([3, 15, 255, 0]) + identity
        + struct.pack(">HH", 2, 2) + struct.pack(">2H", 0, 65535) * 3
    )
    return icc_profile(b"RGB ", {b"A2B0": lut})


def shared_curves_profile(stages: int = 100, segments: int = 1000) -> bytes:
    """A v4 RGB profile whose float pipeline (``mpet``, D2B0) has ``stages`` stages that all
    point at one set of three curves of ``segments`` segments: littlecms tabulates the set
    again for each stage, scanning every segment for each of 4096 points (at the defaults,
    40 s of CPU for a 33 KB profile that a PNG carries in 450 bytes)."""
    segment = b"parf\x00\x00\x00\x00" + struct.pack(">HH4f", 0, 0, 2.2, 1.0, 0.0, 0.0)
    # Every breakpoint at 1.0: a value in [0, 1] is looked for from the last segment down.
    curve = (
        b"curf\x00\x00\x00\x00" + struct.pack(">HH", segments, 0)
        + struct.pack(f">{segments - 1}f", *[1.0] * (segments - 1)) + segment * segments
    )
    curves = b"cvst\x00\x00\x00\x00" + struct.pack(">HH", 3, 3)
    curves += struct.pack(">II", len(curves) + 24, len(curve)) * 3 + curve
    head = b"mpet\x00\x00\x00\x00" + struct.pack(">HHI", 3, 3, stages)
    pipeline = head + struct.pack(">II", len(head) + 8 * stages, len(curves)) * stages + curves
    return _v4(icc_profile(b"RGB ", {b"D2B0": pipeline}))


def _v4(profile: bytes) -> bytes:
    """``profile`` marked as ICC version 4, the version that has these tag types."""
    return profile[:8] + struct.pack(">I", 0x04300000) + profile[12:]


def _srgb_to_lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    from PIL import ImageCms

    transform = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = ImageCms.applyTransform(Image.new("RGB", (1, 1), rgb), transform)
    assert lab is not None
    lightness, a, b = lab.getpixel((0, 0))  # type: ignore[misc]
    return lightness / 2.55, a - 128, b - 128


def with_profile(
    fmt: str, colour: tuple[int, ...] | int, profile: bytes, mode: str = "RGB", **save: object
) -> bytes:
    """A 40x30 image of one ``colour`` with ``profile`` embedded."""
    return image_bytes_of(Image.new(mode, (40, 30), colour), fmt, icc_profile=profile, **save)


def image_bytes_of(im: Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **save)
    return out.getvalue()


def webp_of_checkerboards(side: int, frames: int) -> bytes:
    """A lossless WebP animation alternating between a checkerboard of single pixels and its
    inverse: about 12 KB at 632x632 and 100 frames, and 9 MB of lossy WebP."""
    pattern = bytes(255 * ((x + y) % 2) for y in range(side) for x in range(side))
    board = Image.frombytes("L", (side, side), pattern).convert("RGB")
    inverse = Image.eval(board, lambda v: 255 - v)
    images = [inverse if i % 2 else board for i in range(frames)]
    return image_bytes_of(images[0], "WEBP", save_all=True, append_images=images[1:],
                          duration=50, lossless=True)


def _riff_chunks(data: bytes) -> list[bytes]:
    """The top-level chunks of a WebP's RIFF container, each whole (header and padding)."""
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        chunks.append(data[offset : offset + 8 + size + (size & 1)])
        offset += 8 + size + (size & 1)
    return chunks


def webp_with_a_lossy_frame(animation: bytes) -> bytes:
    """``animation`` (a WebP animation) with one lossy frame of grey added at its end."""
    width = int.from_bytes(animation[24:27], "little") + 1  # from the VP8X chunk
    height = int.from_bytes(animation[27:30], "little") + 1
    grey = [Image.new("RGB", (width, height), (i * 60, 128, 128)) for i in range(2)]
    lossy = image_bytes_of(grey[0], "WEBP", save_all=True, append_images=grey[1:], duration=50)
    frame = next(c for c in _riff_chunks(lossy) if c.startswith(b"ANMF"))
    body = b"".join(_riff_chunks(animation)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
