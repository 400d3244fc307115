"""Hostile uploads at the edges: bodies the form parser drops, names that tell too much,
images built to trip the re-encoding (RIFF chunks, shared GIF palettes, compact PNGs)."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
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
# As in production (see bastion.uploads.imaging), Pillow's bomb warning is an error.
pytestmark = pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
# Far above what any of these files takes (milliseconds): a loop that the chunk or frame
# bounds failed to stop would take far longer.
SECONDS_PER_FILE = 5.0


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


def _clean_or_refused(data: bytes) -> dict[str, imaging.CleanImage]:
    """Process ``data`` as both kinds: each a clean image that decodes, within the stored
    cap, or a 4xx refusal with a message, never another exception; bounded in time."""
    kept = {}
    for kind in ("article", "avatar"):
        started = time.monotonic()
        refusal: imaging.ImageRejectedError | None = None
        try:
            clean = imaging.process(data, kind=kind)
        except imaging.ImageRejectedError as refused:
            refusal = refused
        if refusal is not None:
            assert 400 <= refusal.status < 500, refusal.reason
            assert refusal.message.endswith(".")
        else:
            stored = [clean.data, *clean.variants.values()]
            assert sum(map(len, stored)) <= imaging.MAX_STORED_BYTES
            for one in stored:
                with Image.open(io.BytesIO(one)) as im:
                    im.load()
            kept[kind] = clean
        assert time.monotonic() - started < SECONDS_PER_FILE, kind
    return kept


def _chunk(kind: bytes, payload: bytes, size: int | None = None) -> bytes:
    """A RIFF chunk: ``size`` as declared (the payload's own by default), padded to even."""
    declared = len(payload) if size is None else size
    return kind + struct.pack("<I", declared) + payload + b"\0" * (len(payload) & 1)


def _riff(body: bytes, size: int | None = None) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(body) if size is None else size) + b"WEBP" + body


def _webp_chunks(*, animated: bool, **save: object) -> list[bytes]:
    frames = [Image.new("RGB", (17, 9), colour) for colour in ((10, 200, 30), (1, 2, 3))]
    if animated:
        save.update(save_all=True, append_images=frames[1:], duration=50)
    return corpus._riff_chunks(corpus.image_bytes_of(frames[0], "WEBP", **save))


STILL_LOSSLESS = _webp_chunks(animated=False, lossless=True)[0]
STILL_LOSSY = _webp_chunks(animated=False, quality=50)[0]
ANIMATION = _webp_chunks(animated=True, lossless=True)  # VP8X ANIM ANMF ANMF
LOSSY_FRAME = _webp_chunks(animated=True, quality=50)[-1]
assert (STILL_LOSSLESS[:4], STILL_LOSSY[:4], LOSSY_FRAME[:4]) == (b"VP8L", b"VP8 ", b"ANMF")
ANIMATED_VP8X = _chunk(b"VP8X", b"\x02\0\0\0" + (16).to_bytes(3, "little") + (8).to_bytes(3, "little"))


def _frame(inner: bytes) -> bytes:
    """An ANMF chunk with the first frame's header around ``inner``."""
    return _chunk(b"ANMF", ANIMATION[2][8:24] + inner)


def _nested_frames(depth: int) -> bytes:
    inner = ANIMATION[2][24:]
    for _ in range(depth):
        inner = _frame(inner)
    return inner


HOSTILE_WEBPS: dict[str, tuple[bytes, bool]] = {
    # name: (file, whether the chunks read as lossless)
    "riff-size-past-file": (_riff(STILL_LOSSLESS, size=10**6), True),
    "riff-size-ffffffff": (_riff(STILL_LOSSLESS, size=0xFFFFFFFF), True),
    "riff-size-0": (_riff(STILL_LOSSLESS, size=0), False),
    "chunk-size-past-file": (_riff(STILL_LOSSLESS[:4] + struct.pack("<I", 10**6)
                                   + STILL_LOSSLESS[8:]), True),
    "chunk-size-ffffffff": (_riff(STILL_LOSSLESS[:4] + b"\xff" * 4 + STILL_LOSSLESS[8:]), True),
    "cut-chunk-header": (_riff(STILL_LOSSLESS + b"VP8 \x05"), True),
    # One byte short of its padding: the next header is read a byte late, as garbage.
    "odd-size-unpadded": (_riff(_chunk(b"JUNK", b"x")[:-1] + STILL_LOSSLESS), False),
    "lossless-then-lossy": (_riff(STILL_LOSSLESS + STILL_LOSSY), False),
    "lossy-then-lossless": (_riff(STILL_LOSSY + STILL_LOSSLESS), False),
    "1100-chunks-first": (_riff(b"JUNK\0\0\0\0" * 1100 + STILL_LOSSLESS), False),
    "1100-chunks-after": (_riff(STILL_LOSSLESS + b"JUNK\0\0\0\0" * 1100), False),
    "vp8x-animated-no-frames": (_riff(ANIMATED_VP8X + STILL_LOSSLESS), True),
    "vp8x-animated-only": (_riff(ANIMATED_VP8X), False),
    "frame-of-garbage": (_riff(b"".join(ANIMATION[:2]) + _frame(b"\xff" * 37) + ANIMATION[3]),
                         True),
    "frame-in-a-frame": (_riff(b"".join(ANIMATION[:2]) + _nested_frames(2) + ANIMATION[3]), True),
    "frames-1100-deep": (_riff(b"".join(ANIMATION[:2]) + _nested_frames(1100)), False),
    "frame-lossless-and-lossy": (_riff(b"".join(ANIMATION[:2])
                                       + _frame(ANIMATION[2][24:] + LOSSY_FRAME[24:])), False),
    "frame-size-past-file": (_riff(b"".join(ANIMATION[:2]) + ANIMATION[2][:4]
                                   + struct.pack("<I", 10**6) + ANIMATION[2][8:]), True),
    "frame-shorter-than-header": (_riff(b"".join(ANIMATION[:2]) + _chunk(b"ANMF", b"\0" * 4)
                                        + ANIMATION[3]), True),
    "lossy-frame-last": (_riff(b"".join(ANIMATION) + LOSSY_FRAME), False),
    "1100-chunks-between-frames": (_riff(b"".join(ANIMATION[:3]) + b"JUNK\0\0\0\0" * 1100
                                         + ANIMATION[3]), False),
}


@pytest.mark.asvs("V5.2.2", "V15.2.2")
@pytest.mark.parametrize(("data", "lossless"), HOSTILE_WEBPS.values(), ids=HOSTILE_WEBPS.keys())
def test_a_hostile_riff_container_is_read_within_bounds_and_never_a_500(
    data: bytes, lossless: bool
) -> None:
    # The chunks are read by hand to learn whether the WebP is lossless: sizes past the
    # file or the container, cut headers, frames in frames and a thousand empty chunks
    # read as far as the bounds and no further; past WEBP_MAX_CHUNKS the file is lossy.
    assert imaging._webp_lossless(data) is lossless
    _clean_or_refused(data)


@pytest.mark.asvs("V15.2.2")
def test_a_million_empty_chunks_cost_no_more_than_an_honest_webp() -> None:
    data = _riff(b"JUNK\0\0\0\0" * 1_000_000 + STILL_LOSSLESS)
    started = time.monotonic()
    assert imaging._webp_lossless(data) is False
    assert time.monotonic() - started < 0.5


def _frames_of_colours(colours: list[tuple[int, int, int]], count: int = 3) -> list[Image.Image]:
    """``count`` 20x20 frames sharing ``colours`` between them, each in its own palette."""
    shuffle = random.Random(len(colours))
    share = -(-len(colours) // count)
    frames = []
    for number in range(count):
        mine = colours[number * share : (number + 1) * share] or colours[:1]
        frame = Image.new("P", (20, 20))
        frame.putpalette([value for colour in mine for value in colour])
        pixels = [i % len(mine) for i in range(400)]
        shuffle.shuffle(pixels)
        frame.putdata(pixels)
        frames.append(frame)
    return frames


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize(
    ("count", "values", "worst"),
    [(255, 64, 0), (255, 65, 8), (256, 64, 16), (257, 17, 16), (400, 64, 16)],
    ids=["255-colours-64-values", "65-values", "256-colours", "257-colours", "400-colours"],
)
def test_a_gif_palette_at_its_limits(count: int, values: int, worst: int) -> None:
    # Up to 255 colours with at most 64 values a channel come through exactly; past either
    # limit each pixel is within a few levels of what was sent.
    steps = range(0, 256, 256 // values)[:values]
    grid = [(r, g, 7) for r in steps for g in steps]
    random.Random(count).shuffle(grid)
    data = _gif(_frames_of_colours(grid[:count]))
    clean = _clean_or_refused(data)["article"]
    assert _worst_difference(data, clean.data) <= worst


def _frame_showing(data: bytes) -> list[bytes]:
    """Each frame of a GIF once composed, transparent pixels all alike."""
    shown = []
    with Image.open(io.BytesIO(data)) as im:
        for frame in ImageSequence.Iterator(im):
            rgba = frame.convert("RGBA")
            over = Image.new("RGBA", rgba.size, (1, 2, 3, 0))
            over.paste(rgba, mask=rgba.getchannel("A"))
            shown.append(over.tobytes())
    return shown


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize("modes", ["RGB RGBA RGB", "RGBA RGB RGBA", "RGBA RGBA RGB"])
def test_a_gif_whose_frames_gain_and_lose_transparency_shows_every_frame_as_sent(
    modes: str,
) -> None:
    frames = []
    for number, mode in enumerate(modes.split()):
        frame = Image.new(mode, (24, 16), (200, 30, 30, 255) if mode == "RGBA" else (200, 30, 30))
        frame.paste((0, 0, 255), (number * 5, 0, number * 5 + 6, 8))
        if mode == "RGBA":
            frame.paste((0, 0, 0, 0), (0, 10, 24, 16))
        frames.append(frame)
    data = corpus.gif_of(frames)
    clean = _clean_or_refused(data)["article"]
    assert _frame_showing(clean.data) == _frame_showing(data)


@pytest.mark.asvs("V5.2.2", "V15.2.2")
def test_a_gif_whose_frames_grow_the_canvas_is_processed_or_refused() -> None:
    for side, frames in ((40, 5), (300, 20), (3000, 6)):
        _clean_or_refused(corpus.gif_growing_canvas(side, frames))


@pytest.mark.asvs("V5.2.2")
@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    values=st.lists(st.integers(0, 255), min_size=1, max_size=64, unique=True),
    picks=st.lists(st.lists(st.integers(0, 10_000), min_size=12, max_size=12), min_size=1,
                   max_size=4),
    clear=st.booleans(),
)
def test_any_gif_of_few_colours_comes_through_exactly(
    values: list[int], picks: list[list[int]], clear: bool
) -> None:
    # At most 255 colours, at most 64 values a channel: every frame, stored as its changes
    # or on a cleared canvas, shows exactly what was sent, transparency included.
    colours = [(values[i % len(values)], values[i * 7 % len(values)], values[i * 13 % len(values)])
               for i in range(min(255, 3 * len(values)))]
    frames = []
    for pick in picks:
        frame = Image.new("RGBA", (4, 3))
        pixels = [(*colours[p % len(colours)], 255) for p in pick]
        if clear:
            pixels[pick[0] % 12] = (0, 0, 0, 0)  # every frame keeps a clear pixel
        frame.putdata(pixels)
        frames.append(frame if clear else frame.convert("RGB"))
    data = corpus.gif_of(frames)
    clean = _clean_or_refused(data)["article"]
    assert _frame_showing(clean.data) == _frame_showing(data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def _png(size: tuple[int, int], depth: int, colour_type: int, rows: list[bytes],
         extra: bytes = b"") -> bytes:
    """A PNG put together by hand: what encoders would not write (a tRNS longer than the
    palette, pixels past it)."""
    header = struct.pack(">IIBBBBB", *size, depth, colour_type, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + row for row in rows))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + extra
            + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b""))


FOUR_COLOURS = _png_chunk(b"PLTE", bytes([10, 20, 30, 200, 0, 0, 0, 200, 0, 0, 0, 200]))
INDEXES = [bytes((x * y + x) % 4 for x in range(7)) for y in range(5)]
PAST_THE_PALETTE = [bytes((0, 1, 5, 200, 255, 3, 2)) for _ in range(5)]
HOSTILE_PNGS: dict[str, bytes] = {
    "tRNS-longer-than-palette": _png((7, 5), 8, 3, INDEXES, FOUR_COLOURS
                                     + _png_chunk(b"tRNS", bytes([0, 128, 255, 7, 9, 9, 9]))),
    "tRNS-of-256": _png((7, 5), 8, 3, INDEXES, FOUR_COLOURS + _png_chunk(b"tRNS", bytes(range(256)))),
    "tRNS-shorter": _png((7, 5), 8, 3, INDEXES, FOUR_COLOURS + _png_chunk(b"tRNS", b"\0")),
    "one-colour": _png((7, 5), 8, 3, [bytes(7)] * 5, _png_chunk(b"PLTE", b"\1\2\3")),
    "one-clear-colour": _png((7, 5), 8, 3, [bytes(7)] * 5,
                             _png_chunk(b"PLTE", b"\1\2\3") + _png_chunk(b"tRNS", b"\0")),
    "indexes-past-palette": _png((7, 5), 8, 3, PAST_THE_PALETTE, FOUR_COLOURS),
    "indexes-past-palette-tRNS": _png((7, 5), 8, 3, PAST_THE_PALETTE,
                                      FOUR_COLOURS + _png_chunk(b"tRNS", b"\x80\0")),
    "4-bit-past-palette": _png((5, 3), 4, 3, [b"\x0f\xe1\x20"] * 3, FOUR_COLOURS),
    "no-palette": _png((7, 5), 8, 3, INDEXES),
    **{f"1-bit-{width}-wide": _png((width, 3), 1, 0, [bytes([0xA5, 0x3C, 0xF0][: (width + 7) // 8])] * 3)
       for width in (1, 7, 9, 17)},
    "1-bit-with-key": _png((9, 3), 1, 0, [b"\xa5\x80"] * 3, _png_chunk(b"tRNS", b"\0\1")),
    "2-bit-grey": _png((5, 3), 2, 0, [b"\x1b\xc0"] * 3),
}


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize("data", HOSTILE_PNGS.values(), ids=HOSTILE_PNGS.keys())
def test_a_malformed_palette_or_1_bit_png_keeps_exactly_its_pixels(data: bytes) -> None:
    clean = _clean_or_refused(data)["article"]
    with Image.open(io.BytesIO(data)) as sent, Image.open(io.BytesIO(clean.data)) as kept:
        assert kept.convert("RGBA").tobytes() == sent.convert("RGBA").tobytes()
        assert kept.mode == (sent.mode if "transparency" not in sent.info or sent.mode == "P"
                             else "RGBA")


def _wide_grey(rows: int = 5, width: int = 7) -> list[int]:
    return [(x * 9973 + y * 31337) % 65536 for y in range(rows) for x in range(width)]


def _wide_png(colour_type: int, extra: bytes = b"") -> bytes:
    values = _wide_grey()
    per_pixel = 2 if colour_type == 4 else 1
    rows = [b"".join(struct.pack(">H", v) * per_pixel for v in values[y * 7 : y * 7 + 7])
            for y in range(5)]
    return _png((7, 5), 16, colour_type, rows, extra)


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize(
    ("data", "key"),
    [(_wide_png(0), None), (_wide_png(0, _png_chunk(b"tRNS", struct.pack(">H", 9973))), 9973),
     (_wide_png(0, _png_chunk(b"tRNS", b"\xff\xff")), 65535), (_wide_png(4), None)],
    ids=["I;16", "I;16-key", "I;16-key-65535", "LA-16-bit"],
)
def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_clipped(data: bytes, key: int | None) -> None:
    # Pillow's own conversion clips every value above 255: a blank white image.
    clean = _clean_or_refused(data)["article"]
    with Image.open(io.BytesIO(clean.data)) as kept:
        shown = kept.convert("LA").tobytes()
    values = _wide_grey()
    assert all(abs(grey - value / 257) <= 1 for grey, value in zip(shown[::2], values, strict=True))
    if key is not None:
        assert list(shown[1::2]) == [0 if value == key else 255 for value in values]


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize("profile", [corpus.linear_grey_profile, corpus.display_p3_profile,
                                     lambda: b"\0" * 200], ids=["grey", "p3", "garbage"])
@pytest.mark.parametrize("image", ["P", "P-past-palette", "L", "L-key", "1", "I;16", "LA-16"])
def test_a_colour_profile_on_a_grey_or_palette_png_is_applied_or_ignored(
    profile: Callable[[], bytes], image: str
) -> None:
    icc = _png_chunk(b"iCCP", b"x\0\0" + zlib.compress(profile()))
    data = {
        "P": lambda: _png((7, 5), 8, 3, INDEXES, icc + FOUR_COLOURS + _png_chunk(b"tRNS", b"\0")),
        "P-past-palette": lambda: _png((7, 5), 8, 3, PAST_THE_PALETTE, icc + FOUR_COLOURS),
        "L": lambda: _png((7, 5), 8, 0, [bytes(range(0, 70, 10))] * 5, icc),
        "L-key": lambda: _png((7, 5), 8, 0, [bytes(range(0, 70, 10))] * 5,
                              icc + _png_chunk(b"tRNS", b"\0\x0a")),
        "1": lambda: _png((9, 3), 1, 0, [b"\xa5\x80"] * 3, icc),
        "I;16": lambda: _wide_png(0, icc),
        "LA-16": lambda: _wide_png(4, icc),
    }[image]()
    kept = _clean_or_refused(data)
    assert set(kept) == {"article", "avatar"}
    assert b"iCCP" not in kept["article"].data


HOSTILE_BASES: list[Callable[[], bytes]] = [
    corpus.gif_of_sprite_over_clear,
    corpus.gif_clearing_up,
    lambda: corpus.png_16bit_grey(1000, transparent=1000),
    lambda: HOSTILE_PNGS["tRNS-longer-than-palette"],
    lambda: corpus.webp_of_checkerboards(16, 4),
    lambda: _riff(b"".join(ANIMATION) + LOSSY_FRAME),
]


@pytest.mark.asvs("V5.2.2", "V15.2.2")
@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    base=st.sampled_from(range(len(HOSTILE_BASES))),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(max_size=8),
                             st.integers(0, 8)), min_size=1, max_size=6),
)
def test_a_damaged_file_is_processed_or_refused_never_a_500(
    base: int, edits: list[tuple[float, bytes, int]]
) -> None:
    data = bytearray(HOSTILE_BASES[base]())
    for where, insert, remove in edits:
        at = int(where * len(data))
        data[at : at + remove] = insert
    _clean_or_refused(bytes(data))


@pytest.mark.asvs("V5.2.2")
def test_hostile_images_through_the_article_form_are_stored_clean_or_refused_clearly(
    client: FlaskClient, editor: User, own_article: Article
) -> None:
    path = f"/articles/{own_article.id}/images"
    sent = _gif([_band_of_reds(range(0, 130, 13)), _band_of_reds(range(130, 250, 12))])
    assert post_file(client, path, sent, filename="bands.gif").status_code == 302
    stored = only_upload()
    served = client.get(f"/uploads/{stored.id}")
    assert served.status_code == 200
    assert _worst_difference(sent, served.data) <= 16
    resp = post_file(client, path, HOSTILE_WEBPS["frame-of-garbage"][0], filename="a.webp")
    assert resp.status_code == 422
    assert "The image could not be read" in resp.get_data(as_text=True)
    assert [event.details["reason"] for event in rejections()] == ["corrupt"]
    assert upload_count() == 1
    assert_store_consistent()
