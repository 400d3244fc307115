"""The image checks on their own: type from content, limits from headers, clean output."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bastion.uploads import imaging
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
@pytest.mark.parametrize("orientation", [1, 6])
def test_a_still_image_is_not_copied_at_full_size(
    monkeypatch: pytest.MonkeyPatch, orientation: int
) -> None:
    # Each full-size copy of a 25-megapixel image is another 100 MB: one for the EXIF
    # orientation and one for the mode took a single upload from 100 MB to 330-530 MB.
    # A rotation needs its one new image; an upright RGB photo needs none.
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = corpus.image_bytes("JPEG", (300, 200), exif=exif)
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
