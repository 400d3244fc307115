"""The image checks on their own: type from content, limits from headers, clean output."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image, ImageChops, ImageSequence

from bastion.uploads import icc, imaging
from tests.uploads import corpus

# As in production (see bastion.uploads.imaging), Pillow's bomb warning is an error. Pillow
# also warns while reading the broken EXIF in corpus.STRUCT_ERRORS; that warning is expected.
pytestmark = [
    pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning"),
    pytest.mark.filterwarnings("ignore:Metadata Warning:UserWarning"),
]


@pytest.mark.asvs("V5.2.2", "V1.3.4")
@pytest.mark.parametrize(
    ("data", "reason"),
    [(d, r) for _, d, r in corpus.REFUSED],
    ids=[c for c, _, _ in corpus.REFUSED],
)
def test_attack_corpus_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(imaging.ImageRejectedError) as info:
        imaging.process(data, kind="article")
    assert info.value.reason == reason
    assert info.value.message


@pytest.mark.asvs("V5.2.2", "V16.3.4")
def test_any_other_decoder_failure_is_a_logged_corrupt_refusal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fails(image: Image.Image, **_options: object) -> Image.Image:
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(imaging.ImageOps, "exif_transpose", fails)
    with pytest.raises(imaging.ImageRejectedError) as info:
        imaging.process(corpus.jpeg_with_gps(), kind="avatar")
    assert info.value.reason == "corrupt"
    assert info.value.status == 422
    assert [r.error_type for r in caplog.records if r.name == "bastion.uploads"] == ["RuntimeError"]


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_each_accepted_format_is_reencoded_in_kind(fmt: str) -> None:
    clean = imaging.process(corpus.image_bytes(fmt, (40, 30)), kind="article")
    assert clean.format.name == fmt
    with Image.open(io.BytesIO(clean.data)) as im:
        assert im.format == fmt
        assert im.size == (40, 30) == (clean.width, clean.height)


def test_type_comes_from_content_not_from_what_it_claims() -> None:
    # PNG bytes: whatever the name or header said, they are PNG.
    assert imaging.sniff(corpus.png()) == imaging.FORMATS["PNG"]
    assert imaging.sniff(corpus.HTML) is None
    assert imaging.sniff(b"RIFF\x00\x00\x00\x00WAVE") is None


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize(
    "make",
    [corpus.gif_js_polyglot, corpus.jpeg_with_html_appended],
    ids=["gif-js-polyglot", "jpeg-html-appended"],
)
def test_polyglots_come_out_as_clean_images_without_the_payload(make) -> None:  # type: ignore[no-untyped-def]
    data = make()
    assert b"alert(" in data
    clean = imaging.process(data, kind="article")
    assert b"alert(" not in clean.data
    assert b"<script" not in clean.data.lower()
    assert b"<html" not in clean.data.lower()
    with Image.open(io.BytesIO(clean.data)) as im:
        im.load()
        assert "comment" not in im.info


def test_gps_exif_icc_and_comments_are_dropped() -> None:
    data = corpus.jpeg_with_gps()
    assert corpus.GPS_MARKER.encode() in data
    clean = imaging.process(data, kind="article")
    assert corpus.GPS_MARKER.encode() not in clean.data
    with Image.open(io.BytesIO(clean.data)) as im:
        assert not im.getexif()
        assert "exif" not in im.info
        assert "icc_profile" not in im.info
        assert "comment" not in im.info


def test_animation_keeps_its_frames_within_limits() -> None:
    clean = imaging.process(corpus.animated_gif(5), kind="article")
    with Image.open(io.BytesIO(clean.data)) as im:
        assert im.n_frames == 5


def test_avatar_is_cropped_square_at_fixed_sizes() -> None:
    clean = imaging.process(corpus.image_bytes("WEBP", (300, 120)), kind="avatar")
    assert (clean.width, clean.height) == (256, 256)
    with Image.open(io.BytesIO(clean.variants[64])) as small:
        assert small.size == (64, 64)


def test_large_article_images_are_scaled_down() -> None:
    clean = imaging.process(corpus.image_bytes("PNG", (5000, 100)), kind="article")
    assert clean.width == imaging.ARTICLE_MAX_SIDE


def test_pillow_guard_matches_our_limit() -> None:
    assert Image.MAX_IMAGE_PIXELS == imaging.MAX_PIXELS


def test_animated_webp_keeps_its_frames() -> None:
    frames = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=80)
    clean = imaging.process(out.getvalue(), kind="article")
    with Image.open(io.BytesIO(clean.data)) as im:
        assert im.n_frames == 3


@pytest.mark.asvs("V5.2.2", "V15.2.2")
def test_frames_that_grow_past_the_header_count_against_the_pixel_budget() -> None:
    # 1x1 and 4 frames by its header (within every limit), but three frames of 20 megapixels
    # each once decoded: 60 megapixels, over MAX_TOTAL_PIXELS, from a file of ~100 bytes.
    side = 4_472
    data = corpus.gif_growing_canvas(side, frames=4)
    assert len(data) < 200
    with Image.open(io.BytesIO(data)) as im:
        assert (im.size, im.n_frames) == ((1, 1), 4)
    assert 3 * side * side > imaging.MAX_TOTAL_PIXELS
    with pytest.raises(imaging.ImageRejectedError) as refused:
        imaging.process(data, kind="article")
    assert refused.value.reason == "too_many_pixels"


@pytest.mark.asvs("V15.2.2", "V5.2.1")
def test_gif_frames_are_not_left_to_the_slow_quantiser(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow puts an RGB frame into a GIF's palette by median cut: 100 frames of 632x632
    # noise, a 600 KB file within every limit, held the decode slot for 9-12 s, past the
    # 10 s a queued upload waits for it. The same file, smaller here: no frame goes that way.
    data = corpus.gif_of_noise(side=120, frames=12)
    median_cut: list[tuple[int, int]] = []
    convert = Image.Image.convert

    def watched(im: Image.Image, mode: str | None = None, *args: object, **kw: object) -> Image.Image:
        if mode == "P" and im.mode == "RGB" and kw.get("palette") == Image.Palette.ADAPTIVE:
            median_cut.append(im.size)
        return convert(im, mode, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "convert", watched)
    clean = imaging.process(data, kind="article")
    monkeypatch.undo()
    assert median_cut == []
    with Image.open(io.BytesIO(data)) as sent, Image.open(io.BytesIO(clean.data)) as kept:
        assert kept.n_frames == sent.n_frames == 12
        for before, after in zip(ImageSequence.Iterator(sent), ImageSequence.Iterator(kept),
                                 strict=True):
            worst = max(high for _, high in
                        ImageChops.difference(before.convert("RGB"), after.convert("RGB"))
                        .getextrema())
            assert worst <= 16  # a few levels of colour at most, the pixels all there


def _shown(data: bytes) -> list[tuple[bytes, bytes]]:
    """What each frame of a GIF shows once composed: its alpha, and its colours where opaque."""
    shown = []
    with Image.open(io.BytesIO(data)) as im:
        for number in range(im.n_frames):
            im.seek(number)
            frame = im.convert("RGBA")
            alpha = frame.getchannel("A")
            over = Image.new("RGB", frame.size, (1, 2, 3))
            over.paste(frame.convert("RGB"), mask=alpha)
            shown.append((alpha.tobytes(), over.tobytes()))
    return shown


def _disposals(data: bytes) -> set[int]:
    with Image.open(io.BytesIO(data)) as im:
        found = set()
        for number in range(im.n_frames):
            im.seek(number)
            found.add(im.disposal_method)
    return found


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_a_gif_of_frames_that_change_little_is_stored_as_small_as_it_came() -> None:
    # 100 frames of 632x632 noise differing by a pixel: 40 megapixels, within
    # MAX_TOTAL_PIXELS, in 600 KB. Each frame quantised to a palette of its own and stored
    # whole, it came out at 55 MB, more than half an editor's 100 MB quota in one upload.
    data = corpus.gif_of_noise(side=632, frames=100)
    assert len(data) < 700_000
    clean = imaging.process(data, kind="article")
    assert len(clean.data) < 2 * len(data)
    with Image.open(io.BytesIO(clean.data)) as kept:
        assert kept.n_frames == 100
        kept.seek(99)
        last = kept.convert("RGB")
    with Image.open(io.BytesIO(data)) as sent:
        sent.seek(99)
        worst = ImageChops.difference(sent.convert("RGB"), last).getextrema()
    assert max(high for _, high in worst) <= 16


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize(
    ("make", "disposals"),
    [
        (corpus.gif_of_few_colours, {1}),  # opaque: each frame stored as what changed
        (corpus.gif_clearing_up, {1}),  # transparency shrinks: what changed, still exact
        (corpus.gif_of_sprite_over_clear, {2}),  # pixels turn clear: each on a cleared canvas
        (corpus.gif_of_hole_moving, {2}),
    ],
    ids=["opaque", "transparency-shrinking", "sprite-over-clear", "hole-moving"],
)
def test_every_frame_of_a_gif_shows_what_was_sent(make, disposals: set[int]) -> None:  # type: ignore[no-untyped-def]
    # Frames stored as their changes from the last are exact only while no pixel turns
    # transparent: with nothing disposed, the frame before shows through it.
    data = make()
    clean = imaging.process(data, kind="article")
    sent, kept = _shown(data), _shown(clean.data)
    assert len(sent) == len(kept) == 6
    assert len({colours for _, colours in sent}) == 6  # every frame differs from the others
    for number, (before, after) in enumerate(zip(sent, kept, strict=True)):
        assert before == after, f"frame {number}"
    assert _disposals(clean.data) == disposals


@pytest.mark.parametrize(
    "make", [corpus.gif_clearing_up, corpus.gif_of_sprite_over_clear, corpus.gif_of_hole_moving]
)
def test_the_transparent_samples_change_their_transparency(make) -> None:  # type: ignore[no-untyped-def]
    assert len({alpha for alpha, _ in _shown(make())}) == 6


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_a_gif_that_would_still_be_stored_large_is_refused() -> None:
    # Every frame turns a pixel of 632x632 noise transparent: the upload stores each change
    # in a few bytes, but stored exactly, each frame is the whole noise again: 55 MB.
    data = corpus.gif_of_noise_clearing(side=632, frames=100)
    assert len(data) < 600_000
    with pytest.raises(imaging.ImageRejectedError) as refused:
        imaging.process(data, kind="article")
    assert (refused.value.reason, refused.value.status) == ("too_large_after_cleaning", 422)
    assert "fewer or smaller frames" in refused.value.message


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_a_webp_animation_goes_through_the_same_limit() -> None:
    # 100 KB of lossless WebP is stored lossless, at about its size; with one lossy frame
    # the animation is re-encoded lossy, and every frame of noise tiles took 27 MB in all.
    tiles = corpus.webp_of_noise_tiles(side=632, frames=75)
    assert len(imaging.process(tiles, kind="article").data) < 2 * len(tiles)
    data = corpus.webp_with_a_lossy_frame(tiles)
    assert len(data) < 200_000
    with pytest.raises(imaging.ImageRejectedError) as refused:
        imaging.process(data, kind="article")
    assert refused.value.reason == "too_large_after_cleaning"


def _frames(data: bytes) -> list[Image.Image]:
    with Image.open(io.BytesIO(data)) as im:
        return [frame.convert("RGB") for frame in ImageSequence.Iterator(im)]


def _exact(sent: bytes, kept: bytes) -> bool:
    pairs = zip(_frames(sent), _frames(kept), strict=True)
    return all(ImageChops.difference(a, b).getbbox() is None for a, b in pairs)


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_a_lossless_webp_animation_is_stored_lossless_at_about_its_size() -> None:
    # Re-encoded lossy, this 12 KB checkerboard animation took 9 MB (750 times its size).
    data = corpus.webp_of_checkerboards(side=632, frames=100)
    assert len(data) < 12_000
    clean = imaging.process(data, kind="article")
    assert len(clean.data) < 20 * len(data)
    assert _exact(data, clean.data)


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_a_still_lossless_webp_stays_exact() -> None:
    noise = Image.frombytes("RGB", (64, 48), bytes(range(256)) * 36)
    data = corpus.image_bytes_of(noise, "WEBP", lossless=True)
    clean = imaging.process(data, kind="article")
    assert clean.data[12:16] == b"VP8L"
    assert _exact(data, clean.data)


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_a_lossy_webp_is_stored_lossy_without_its_metadata() -> None:
    data = corpus.image_bytes(
        "WEBP", (64, 48), quality=50, exif=corpus.gps_exif(), icc_profile=corpus.display_p3_profile()
    )
    assert corpus.GPS_MARKER.encode() in data
    clean = imaging.process(data, kind="article")
    assert b"VP8 " in clean.data and b"VP8L" not in clean.data
    assert corpus.GPS_MARKER.encode() not in clean.data
    with Image.open(io.BytesIO(clean.data)) as im:
        assert "exif" not in im.info and "icc_profile" not in im.info


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_an_image_that_would_grow_many_times_over_is_refused() -> None:
    # 9 KB of PNG, a 5000x5000 red and blue checkerboard: scaled down to 4096 px, 3.9 MB of
    # moire (in black and white, 1.6 MB of grey: within GROWTH_FLOOR_BYTES).
    board = Image.frombytes("1", (5000, 5000), (b"\xaa" * 625 + b"\x55" * 625) * 2500)
    board = board.convert("P")
    board.putpalette([255, 0, 0, 0, 0, 255])
    data = corpus.image_bytes_of(board, "PNG", optimize=True)
    assert len(data) < 20_000
    with pytest.raises(imaging.ImageRejectedError) as refused:
        imaging.process(data, kind="article")
    assert (refused.value.reason, refused.value.status) == ("too_large_after_cleaning", 422)
    assert f"{imaging.MAX_GROWTH} times" in refused.value.message


def _same_pixels(sent: bytes, kept: bytes) -> bool:
    with Image.open(io.BytesIO(sent)) as before, Image.open(io.BytesIO(kept)) as after:
        return ImageChops.difference(before.convert("RGBA"), after.convert("RGBA")).getbbox() is None


def _png_header(data: bytes) -> tuple[int, int]:
    """A PNG's bit depth and colour type, from its IHDR."""
    return data[24], data[25]


@pytest.mark.asvs("V15.2.2", "V5.2.1")
def test_a_scanned_page_is_stored_bilevel_without_holding_the_decode_slot() -> None:
    # A 1 MB PNG of a dithered A4 scan at 300 dpi, stored as RGB at zlib level 9, held the
    # decode slot 13-23 s, past the DECODE_WAIT_SECONDS a queued upload waits: every upload
    # behind it was told to retry. Kept at one bit a pixel, it has 24 times less to compress.
    data = corpus.scanned_page()
    assert 800_000 < len(data) < 1_200_000
    started = time.thread_time()  # this thread's CPU: other work on the host does not count
    clean = imaging.process(data, kind="article")
    spent = time.thread_time() - started
    assert _png_header(clean.data) == (1, 0)  # 1-bit greyscale
    assert _same_pixels(data, clean.data)
    assert len(clean.data) < 1.1 * len(data)
    assert spent < imaging.DECODE_WAIT_SECONDS / 4, spent  # 0.2-0.4 s measured, 13 s before


@pytest.mark.asvs("V15.2.2", "V5.2.1")
def test_a_large_png_is_not_compressed_at_the_slowest_level(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same page sent as RGB is RGB: zlib level 9 spent 16 s on its 26 MB of pixels, level
    # 4 half a second. Small images (avatars) are still compressed as hard as zlib can.
    data = corpus.scanned_page("RGB")
    photo = corpus.image_bytes("PNG", (300, 300), "RGBA")
    levels: list[tuple[str, tuple[int, int], object, object]] = []
    save = Image.Image.save

    def watched(im: Image.Image, fp: object, format: str | None = None, **kw: object) -> None:
        levels.append((im.mode, im.size, kw.get("compress_level"), kw.get("optimize")))
        save(im, fp, format, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "save", watched)
    clean = imaging.process(data, kind="article")
    avatar = imaging.process(photo, kind="avatar")
    monkeypatch.undo()
    assert levels == [
        ("RGB", (2480, 3508), imaging.PNG_LARGE_LEVEL, None),
        ("RGBA", (256, 256), 9, None),
        ("RGBA", (64, 64), 9, None),
    ]
    assert _same_pixels(data, clean.data)
    assert avatar.format.name == "PNG"


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize(
    ("mode", "header"), [("L", (8, 0)), ("LA", (8, 4)), ("P", (8, 3)), ("I;16", (8, 0))]
)
def test_a_grey_or_palette_png_keeps_its_compact_mode_and_its_pixels(
    mode: str, header: tuple[int, int]
) -> None:
    # As RGB or RGBA, the same pixels took two to four times the bytes to compress.
    shades = Image.linear_gradient("L").resize((300, 200))
    im = {"LA": lambda: Image.merge("LA", (shades, shades.transpose(Image.Transpose.ROTATE_180))),
          "P": lambda: shades.quantize(200),
          "I;16": lambda: shades.point(lambda v: v * 257, "I").convert("I;16")}.get(mode, lambda: shades)()
    data = corpus.image_bytes_of(im, "PNG")
    clean = imaging.process(data, kind="article")
    assert _png_header(clean.data) == header
    if mode == "I;16":
        data = corpus.image_bytes_of(shades, "PNG")  # its 8-bit tones
    assert _same_pixels(data, clean.data)


@pytest.mark.asvs("V5.2.2")
def test_a_palette_png_keeps_its_transparency_and_only_the_colours_it_uses() -> None:
    # Unused palette entries are not pixels: a payload there must not reach the stored file.
    im = Image.new("P", (40, 30), 1)
    im.paste(3, (0, 0, 20, 30))
    payload = corpus.SCRIPT.ljust(60)
    im.putpalette(b"\x10\x20\x30\x00\x00\xff\xaa\xbb\xcc\xff\x00\x00" + payload)
    data = corpus.image_bytes_of(im, "PNG", transparency=bytes([255, 128, 0, 7]))
    assert payload in data
    clean = imaging.process(data, kind="article")
    assert payload not in clean.data
    assert _png_header(clean.data)[1] == 3  # still a palette
    assert _same_pixels(data, clean.data)
    with Image.open(io.BytesIO(clean.data)) as kept:
        assert kept.convert("RGBA").getpixel((30, 5)) == (0, 0, 255, 128)
        assert kept.convert("RGBA").getpixel((5, 5)) == (255, 0, 0, 7)


@pytest.mark.asvs("V5.2.1", "V15.2.2")
def test_jpeg_scans_are_capped_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ordinary progressive JPEGs (about ten scans) and files right at the cap are fine.
    assert imaging.process(corpus.image_bytes("JPEG", progressive=True), kind="avatar")
    assert imaging.process(corpus.jpeg_scan_bomb(imaging.MAX_JPEG_SCANS), kind="article")
    # One more is refused from the bytes alone: libjpeg never runs (it would pass over the
    # whole image once per scan: 66 KB of scans at 1000x1000 took 13 s to decode).
    opened: list[object] = []
    monkeypatch.setattr(imaging.Image, "open", lambda *a, **k: opened.append(a))
    with pytest.raises(imaging.ImageRejectedError) as refused:
        imaging.process(corpus.jpeg_scan_bomb(imaging.MAX_JPEG_SCANS + 1), kind="article")
    assert refused.value.reason == "too_many_scans"
    assert "standard JPEG" in refused.value.message
    assert opened == []


@pytest.mark.asvs("V15.2.2", "V5.2.1")
def test_images_are_decoded_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 25-megapixel image takes 300-470 MB while it is re-encoded; a worker's four threads
    # took four at once to 1.7 GB, past the 1 GiB container (an OOM kill of every request).
    import threading
    import time

    real_open = imaging.Image.open
    inside, most = 0, 0
    lock = threading.Lock()

    def slow_open(*args: object, **kwargs: object) -> Image.Image:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        with lock:
            inside -= 1
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(imaging.Image, "open", slow_open)
    data = corpus.png()
    threads = [
        threading.Thread(target=imaging.process, args=(data,), kwargs={"kind": "article"})
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1


@pytest.mark.asvs("V15.2.2")
def test_a_request_that_waits_too_long_for_its_turn_is_told_to_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imaging, "DECODE_WAIT_SECONDS", 0.01)
    assert imaging.DECODE_SLOTS.acquire(timeout=5)  # another request's image is in progress
    try:
        with pytest.raises(imaging.ImageRejectedError) as busy:
            imaging.process(corpus.png(), kind="avatar")
    finally:
        imaging.DECODE_SLOTS.release()
    assert (busy.value.reason, busy.value.status) == ("busy", 503)
    assert imaging.process(corpus.png(), kind="avatar")  # and the slot is free again


@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("profile", [False, True], ids=["no-profile", "display-p3"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_a_still_image_is_not_copied_at_full_size(
    monkeypatch: pytest.MonkeyPatch, orientation: int, profile: bool
) -> None:
    # Each full-size copy of a 25-megapixel image is another 100 MB: one for the EXIF
    # orientation and one for the mode took a single upload from 100 MB to 330-530 MB.
    # A rotation needs its one new image; an upright RGB photo needs none, and a colour
    # profile is applied in place.
    exif = Image.Exif()
    exif[0x0112] = orientation
    icc = {"icc_profile": corpus.display_p3_profile()} if profile else {}
    data = corpus.image_bytes("JPEG", (300, 200), exif=exif, **icc)
    full = {(300, 200), (200, 300)}
    made: list[tuple[int, int]] = []
    real_new = Image.Image._new

    def counting_new(self: Image.Image, im: object) -> Image.Image:
        out = real_new(self, im)  # type: ignore[arg-type]
        made.append(out.size)
        return out

    monkeypatch.setattr(Image.Image, "_new", counting_new)
    for kind in ("avatar", "article"):
        made.clear()
        clean = imaging.process(data, kind=kind)
        assert sum(size in full for size in made) <= (orientation != 1), (kind, made)
    assert (clean.width, clean.height) == ((300, 200) if orientation == 1 else (200, 300))


def _red_on_top(data: bytes) -> tuple[tuple[int, int], bool]:
    """The stored image's size and whether it shows the sideways photo upright."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        top, bottom = (
            rgb.getpixel((rgb.width // 2, 2)),
            rgb.getpixel((rgb.width // 2, rgb.height - 3)),
        )
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    return im.size, top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_camera_orientation_is_honoured(fmt: str) -> None:
    data = corpus.sideways_photo(fmt)
    assert _red_on_top(imaging.process(data, kind="article").data) == ((20, 60), True)
    assert _red_on_top(imaging.process(data, kind="avatar").data)[1]


def test_a_phone_jpeg_with_a_second_frame_is_an_upright_still() -> None:
    # Phones write JPEGs as MPO with an HDR gain map or depth map as a second frame. Taken
    # for an animation, the gain map was decoded for nothing and the orientation ignored:
    # every such portrait photo was stored on its side.
    data = corpus.sideways_mpo()
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
        assert im.n_frames == 2
    article = imaging.process(data, kind="article")
    assert _red_on_top(article.data) == ((20, 60), True)
    assert (article.format.name, article.width, article.height) == ("JPEG", 20, 60)
    with Image.open(io.BytesIO(article.data)) as im:
        assert im.format == "JPEG"
        assert getattr(im, "n_frames", 1) == 1
    assert _red_on_top(imaging.process(data, kind="avatar").data)[1]


@pytest.mark.parametrize("kind", ["article", "avatar"])
def test_16_bit_greyscale_keeps_its_tones(kind: str) -> None:
    # Pillow's own conversion clips 16-bit values at 255: mid-grey came out white.
    clean = imaging.process(corpus.png_16bit_grey(257 * 100), kind=kind)
    with Image.open(io.BytesIO(clean.data)) as im:
        r, g, b = im.convert("RGB").getpixel((im.width // 2, im.height // 2))  # type: ignore[misc]
    assert all(abs(c - 100) <= 3 for c in (r, g, b)), (r, g, b)


def test_16_bit_greyscale_transparency_falls_on_its_own_grey() -> None:
    clean = imaging.process(corpus.png_16bit_grey(0, transparent=257 * 200), kind="article")
    with Image.open(io.BytesIO(clean.data)) as im:
        rgba = im.convert("RGBA")
        assert rgba.getpixel((5, 5))[3] == 0  # type: ignore[index]
        assert rgba.getpixel((35, 5)) == (0, 0, 0, 255)


@pytest.mark.parametrize("loop", [None, 0, 3])
def test_an_animation_plays_as_often_as_it_did(loop: int | None) -> None:
    # A GIF with no loop count plays once and stops on its last frame; re-encoded with
    # Pillow's ``loop=0`` it repeated forever.
    frames = [Image.new("RGB", (8, 8), (i * 60, 0, 0)) for i in range(3)]
    out = io.BytesIO()
    save: dict[str, object] = {} if loop is None else {"loop": loop}
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50, **save)
    clean = imaging.process(out.getvalue(), kind="article")
    with Image.open(io.BytesIO(clean.data)) as im:
        assert im.n_frames == 3
        assert im.info.get("loop") == loop


# Colour profiles: a phone's Display P3 photo, a print shop's CMYK JPEG, a grey scan.
SATURATED_P3 = (230, 60, 40)
# Linear Display P3 to linear sRGB (both D65), from the published primaries.
P3_TO_SRGB = (
    (1.2249401, -0.2249404, 0.0),
    (-0.0420569, 1.0420571, 0.0),
    (-0.0196376, -0.0786361, 1.0982735),
)


def _srgb_of_p3(rgb: tuple[int, int, int]) -> tuple[int, ...]:
    """What a colour-managed browser shows for ``rgb`` in Display P3 (same tone curve)."""

    def linear(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    def encoded(c: float) -> int:
        c = min(max(c, 0.0), 1.0)
        return round(255 * (12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055))

    lin = [linear(v) for v in rgb]
    return tuple(encoded(sum(m * c for m, c in zip(row, lin, strict=True))) for row in P3_TO_SRGB)


def _centre(data: bytes, mode: str = "RGB") -> tuple[int, ...]:
    """The stored image's centre pixel; it must carry no colour profile."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert "icc_profile" not in im.info
        pixel = im.convert(mode).getpixel((im.width // 2, im.height // 2))
    assert isinstance(pixel, tuple)
    return pixel


def _near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 3) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def test_the_expected_srgb_of_a_saturated_p3_colour_is_visibly_different() -> None:
    # The P3 red is brighter and purer than sRGB's numbers for it: shown as sRGB it is dull.
    assert _near(_srgb_of_p3(SATURATED_P3), (250, 31, 14), 1)
    assert not _near(_srgb_of_p3(SATURATED_P3), SATURATED_P3, 10)


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [("JPEG", "article"), ("PNG", "article"), ("WEBP", "article"), ("JPEG", "avatar")],
)
def test_a_display_p3_photo_is_stored_in_srgb_without_its_profile(fmt: str, kind: str) -> None:
    data = corpus.with_profile(fmt, SATURATED_P3, corpus.display_p3_profile(), quality=95)
    clean = imaging.process(data, kind=kind)
    assert _near(_centre(clean.data), _srgb_of_p3(SATURATED_P3), 4 if fmt != "PNG" else 1)
    for variant in clean.variants.values():
        assert _near(_centre(variant), _srgb_of_p3(SATURATED_P3), 4)


@pytest.mark.parametrize("kind", ["article", "avatar"])
def test_a_p3_image_with_transparency_keeps_its_alpha(kind: str) -> None:
    data = corpus.with_profile("PNG", (*SATURATED_P3, 90), corpus.display_p3_profile(), "RGBA")
    clean = imaging.process(data, kind=kind)
    assert clean.format.name == "PNG"
    assert _near(_centre(clean.data, "RGBA"), (*_srgb_of_p3(SATURATED_P3), 90), 1)


def test_a_palette_png_with_a_profile_is_converted() -> None:
    im = Image.new("P", (40, 30), 0)
    im.putpalette(SATURATED_P3)
    data = corpus.image_bytes_of(im, "PNG", icc_profile=corpus.display_p3_profile())
    clean = imaging.process(data, kind="article")
    assert _near(_centre(clean.data), _srgb_of_p3(SATURATED_P3), 1)


@pytest.mark.parametrize("kind", ["article", "avatar"])
def test_a_cmyk_jpeg_is_converted_through_its_profile(kind: str) -> None:
    # A profile whose cyan ink prints red: only a conversion through it gives red (naively,
    # CMYK 100 % cyan is sRGB cyan).
    red_lab = corpus._srgb_to_lab((255, 0, 0))
    profile = corpus.cmyk_profile({(1, 0, 0, 0): red_lab})
    data = corpus.with_profile("JPEG", (255, 0, 0, 0), profile, "CMYK", quality=95)
    clean = imaging.process(data, kind=kind)
    assert clean.format.name == "JPEG"
    assert _near(_centre(clean.data), (255, 0, 0), 6)


@pytest.mark.parametrize(
    ("mode", "colour", "save"),
    [("L", 128, {}), ("LA", (128, 90), {}), ("L", 128, {"transparency": 0})],
    ids=["grey", "grey-alpha", "grey-transparent-key"],
)
@pytest.mark.parametrize("kind", ["article", "avatar"])
def test_a_grey_image_is_converted_through_its_grey_profile(
    kind: str, mode: str, colour: int | tuple[int, int], save: dict[str, object]
) -> None:
    # Linear-light grey 128 is sRGB 188; alpha (a band or a transparent grey) is kept.
    im = Image.new(mode, (40, 30), colour)
    if "transparency" in save:
        im.paste(0, (0, 0, 20, 30))  # the left half is the transparent grey
    data = corpus.image_bytes_of(im, "PNG", icc_profile=corpus.linear_grey_profile(), **save)
    clean = imaging.process(data, kind=kind)
    alpha = 90 if mode == "LA" else 255
    with Image.open(io.BytesIO(clean.data)) as stored:
        assert "icc_profile" not in stored.info
        rgba = stored.convert("RGBA")
        # Every pixel of the opaque right quarter, not one: a wrong layout shows as stripes.
        colours = rgba.crop((rgba.width * 3 // 4, 0, *rgba.size)).getcolors(1000) or []
        assert colours and all(_near(c[:3], (188, 188, 188), 1) for _, c in colours), colours
        assert rgba.getpixel((rgba.width - 3, rgba.height // 2))[3] == alpha  # type: ignore[index]
        if "transparency" in save and kind == "article":
            assert rgba.getpixel((3, 3))[3] == 0  # type: ignore[index]


def test_a_16_bit_grey_png_with_a_grey_profile_is_converted() -> None:
    im = Image.new("I;16", (40, 30), 257 * 128)
    data = corpus.image_bytes_of(im, "PNG", icc_profile=corpus.linear_grey_profile())
    assert _near(_centre(imaging.process(data, kind="article").data), (188, 188, 188), 1)


P3 = corpus.display_p3_profile()
IGNORED_PROFILES = [
    ("garbage", b"not an ICC profile at all" * 40),
    ("truncated", P3[:300]),
    ("header-only", P3[:128]),
    ("wrong-colour-space", corpus.cmyk_profile({})),
    ("no-tone-curves", corpus.profile_without_tone_curves()),
    # A valid profile padded past the limit: littlecms would read it, the limit keeps it out.
    ("over-1-MiB", P3 + b"\x00" * imaging.MAX_ICC_BYTES),
]


@pytest.mark.asvs("V5.2.2")
@pytest.mark.parametrize("kind", ["article", "avatar"])
@pytest.mark.parametrize(
    "profile", [p for _, p in IGNORED_PROFILES], ids=[c for c, _ in IGNORED_PROFILES]
)
def test_an_unusable_or_oversized_profile_is_ignored_as_before(
    profile: bytes, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The pixels decoded: they are stored as they are, without the profile, as every image
    # was before profiles were applied. Refusing would leave the owner nothing to fix.
    data = corpus.with_profile("JPEG", SATURATED_P3, profile, quality=95)
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["icc_profile"] == profile
    with caplog.at_level("INFO", logger="bastion.uploads"):
        clean = imaging.process(data, kind=kind)
    assert _near(_centre(clean.data), SATURATED_P3, 4)
    assert [r.message for r in caplog.records] == ["image colour profile ignored"]


def test_a_v4_profile_is_converted_through_its_table() -> None:
    # Its red corner prints as blue: only a conversion through the table gives blue.
    profile = corpus.rgb_table_profile({(1, 0, 0): corpus._srgb_to_lab((0, 0, 255))})
    data = corpus.with_profile("PNG", (255, 0, 0), profile)
    red, green, blue = _centre(imaging.process(data, kind="article").data)
    # Not exact: v4 perceptual rendering and 8-bit Lab corners move it by up to 35.
    assert blue > 240 and red < 60 and green < 60, (red, green, blue)


# Profiles whose cost littlecms takes from their headers: a grid it allocates before reading
# it (half a gigabyte for a 400-byte profile), a float pipeline whose stages share one set of
# long segmented curves (40 s of CPU for a 450-byte PNG).
COSTLY_PROFILES = [
    ("grid-larger-than-its-bytes", corpus.oversized_grid_profile()),
    ("stages-sharing-long-curves", corpus.shared_curves_profile()),
]


@pytest.mark.asvs("V5.2.1", "V15.2.2")
@pytest.mark.parametrize(
    "profile", [p for _, p in COSTLY_PROFILES], ids=[c for c, _ in COSTLY_PROFILES]
)
def test_a_profile_declaring_more_than_its_bytes_hold_is_ignored_unread(
    profile: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    data = corpus.with_profile("PNG", SATURATED_P3, profile)
    assert len(data) < 1000  # what a client sends; the profile is compressed in the PNG
    with caplog.at_level("INFO", logger="bastion.uploads"):
        clean = imaging.process(data, kind="article")
    assert _centre(clean.data) == SATURATED_P3
    assert [getattr(r, "reason", None) for r in caplog.records] == ["too_complex"]


@pytest.mark.asvs("V5.2.1")
@pytest.mark.parametrize(
    ("declared", "precision", "ignored"),
    [((2, 2, 2), 2, False), ((2, 2, 2), 1, False), ((3, 2, 2), 2, True), ((2, 2, 2), 0, True)],
    ids=["as-held", "8-bit-of-it", "one-point-more", "precision-0"],
)
def test_a_grid_is_read_only_when_its_tag_holds_every_byte_it_declares(
    declared: tuple[int, ...], precision: int, ignored: bool
) -> None:
    # littlecms allocates the 16-bit grid before it checks the precision byte.
    profile = corpus.rgb_table_profile({}, declared=declared, precision=precision)
    assert icc.too_complex(profile) is ignored


def test_every_frame_of_an_animation_is_converted_through_its_profile() -> None:
    colours = [SATURATED_P3, (200, 120, 80), SATURATED_P3]  # the encoder merges twins
    frames = [Image.new("RGB", (8, 8), colour) for colour in colours]
    data = corpus.image_bytes_of(
        frames[0],
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=80,
        lossless=True,
        icc_profile=corpus.display_p3_profile(),
    )
    clean = imaging.process(data, kind="article")
    with Image.open(io.BytesIO(clean.data)) as im:
        assert im.n_frames == 3
        assert "icc_profile" not in im.info
        for frame, colour in zip(ImageSequence.Iterator(im), colours, strict=True):
            pixel = frame.convert("RGB").getpixel((4, 4))
            assert _near(pixel, _srgb_of_p3(colour), 4), pixel  # type: ignore[arg-type]
