"""Image checks and re-encoding: the type comes from the bytes, the output is built anew.

An upload is trusted for nothing but its pixels. The format is decided by magic bytes and
then confirmed by a full decode with only that format's Pillow plugin; pixel and frame
limits are checked from the header before any pixel is decoded (decompression bombs); the
pixels are then copied into fresh images with an empty ``info`` and saved again, so EXIF
(GPS), XMP, ICC, comments, appended data and polyglot payloads never reach the stored file.
An embedded colour profile (Display P3, Adobe RGB, CMYK) is applied first, converting the
pixels to sRGB, which is what browsers assume of an image that carries none.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image, ImageChops, ImageCms, ImageOps, ImageSequence

from bastion.uploads.icc import too_complex

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger("bastion.uploads")

# Largest image decoded at all (about 25 megapixels, 100 MB as RGBA). Pillow's own guard is
# set to the same value so any other code in the process gets the same protection.
MAX_PIXELS = 25_000_000
# Animations: a frame count limit and a budget for all frames together (all are held
# decoded at once while re-encoding, so this bounds memory at about 160 MB).
MAX_FRAMES = 100
MAX_TOTAL_PIXELS = 40_000_000
# Progressive JPEGs are decoded scan by scan, each a pass over the whole image, and libjpeg
# sets no limit: a 5 MB file of tiny repeated scans kept a worker busy for minutes. Encoders
# write about ten (mozjpeg, libjpeg's default progression); a photo with an EXIF thumbnail
# or a second MPO frame adds a few more.
MAX_JPEG_SCANS = 100
# 16-bit greyscale, PNG's one mode that is not 8 bits a channel once Pillow has read it.
WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# An embedded colour profile larger than this is ignored unparsed (Pillow itself refuses a
# PNG's above the same size, ``PngImagePlugin.MAX_TEXT_CHUNK``); real ones are 0.5-60 KB.
MAX_ICC_BYTES = 1 << 20
# What browsers take an image without a profile to be; built once per process.
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# The decoded modes each profile colour space can describe; any other pairing is ignored.
PROFILE_MODES = {
    "RGB ": frozenset({"RGB", "RGBA", "P", "PA"}),
    "GRAY": frozenset({"L", "LA"}) | WIDE_GREY_MODES,
    "CMYK": frozenset({"CMYK"}),
}
# Article images are shrunk to fit this box; avatars are cropped square to these sizes.
ARTICLE_MAX_SIDE = 4096
AVATAR_SIZES = (256, 64)
JPEG_QUALITY = 85
# A GIF's frames share one palette of at most 255 colours, so that a pixel which did not
# change keeps its index and Pillow stores each frame as its change from the last; the
# 256th index is left free for Pillow to mark those unchanged pixels, or holds the
# transparency. When the frames have more colours, they are chosen from a sample of at
# most ``PALETTE_SAMPLE_PIXELS`` taken across the frames.
GIF_COLOURS = 255
PALETTE_SAMPLE_PIXELS = 2_000_000
# Largest cleaned image stored (the file and its variants). Re-encoding can take far more
# room than the upload: a 600 KB GIF of 100 noisy frames came out at 55 MB when every frame
# was stored whole, and a 135 KB lossless WebP animation of repeated noise tiles at 27 MB
# once re-encoded lossy. Photos, screenshots and animations came out at about their own size
# (at most 5 MB, ``MAX_UPLOAD_MB``); three times that with room to spare stops those, and
# the 100 MB quota still holds six such files.
MAX_STORED_BYTES = 16 * 1024 * 1024
# Nor may a cleaned image take more than ``MAX_GROWTH`` times the room of the file sent,
# once past ``GROWTH_FLOOR_BYTES``: a 9 KB PNG of a 5000x5000 red and blue checkerboard,
# scaled down to 4096 px, came out at 3.9 MB of moire. Photos (JPEG and WebP at quality 10-95), screenshots,
# palette and 1-bit PNGs and GIFs came out at 0.2-2.7 times their size, a WebP photo at
# quality 0 at 4.9; a tiny upload may grow past any multiple, hence the floor.
MAX_GROWTH = 16
GROWTH_FLOOR_BYTES = 2 * 1024 * 1024
# A lossless WebP is stored lossless, with little effort (method 1, quality 0): 0.4-1.5 s
# for 30-40 megapixels of animation and 1.4-1.8 s for a 3600x2400 photo, where Pillow's
# defaults (method 4, quality 80) took 2-8 s and method 5 once 25 s. Method 0 was faster
# but stored screenshots at up to 10 times their size; method 1 at 0.7-1.9.
WEBP_LOSSLESS_OPTIONS: dict[str, object] = {"lossless": True, "method": 1, "quality": 0}
# Chunks read at most to learn whether a WebP is lossless (a still has 1-5, an animation of
# ``MAX_FRAMES`` frames a few hundred).
WEBP_MAX_CHUNKS = 1024
# One image decoded at a time per process: a 25-megapixel image takes 300-470 MB while it
# is re-encoded, and a worker's threads took four at once to 1.7 GB, past a 1 GiB container.
# A request waits its turn at most this long, then is told to try again: one image takes
# about a second, and a waiting request holds one of the worker's threads, so uploads
# queued behind each other must not hold them all for long.
DECODE_SLOTS = threading.BoundedSemaphore(1)
DECODE_WAIT_SECONDS = 10.0
# zlib's effort for a PNG, by the bytes of pixels it is given: the most for small images, less
# for larger ones. Level 9 searches up to 4096 earlier matches a byte and took up to 1.7 us a
# byte on black-and-white noise (a dithered A4 scan at 300 dpi, stored as RGB: 16 s), level
# 6 at most 0.13 and level 4 0.045, so no PNG takes more than about 3 s to compress; level 6
# stored screenshots and scans 10-20 % larger than 9, level 4 photos 2 % and screenshots 40 %.
PNG_LEVELS = ((1 << 20, 9), (16 << 20, 6))
PNG_LARGE_LEVEL = 4
# Modes a PNG is stored in as they came (an article's still without a colour profile, or a
# palette's profile applied to its colours): 1 bit, or one or two bytes a pixel, where RGB
# takes three and RGBA four. As RGB, a 1 MB A4 scan of 1-bit dithering took 26 MB to compress.
COMPACT_MODES = frozenset({"1", "L", "LA", "P"})
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Pillow only warns between one and two times its limit; make that a refusal process-wide
# (set once here: ``warnings.catch_warnings`` per call would not be thread-safe).
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Format:
    name: str  # Pillow's format name
    content_type: str
    extension: str


FORMATS = {
    "JPEG": Format("JPEG", "image/jpeg", "jpg"),
    "PNG": Format("PNG", "image/png", "png"),
    "GIF": Format("GIF", "image/gif", "gif"),
    "WEBP": Format("WEBP", "image/webp", "webp"),
}
# Formats whose animations are kept (an article's only); a PNG's APNG frames are dropped.
ANIMATED = frozenset({"GIF", "WEBP"})
# Extensions a file name may carry; anything else (".php", ".svg", ".html") is refused.
NAME_EXTENSIONS = frozenset({"jpg", "jpeg", "jpe", "jfif", "png", "gif", "webp"})
# How Pillow reports truncated or malformed data: these and ``struct.error`` (the same set
# Pillow's own ``Image.open`` treats as "not this format"), raised by the decoders, by EXIF
# parsing in ``exif_transpose`` and by frame counting (GIF ``n_frames``).
DECODER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
)

# How littlecms reports a profile it cannot read (Pillow's wrapper raises OSError as well).
PROFILE_ERRORS: tuple[type[Exception], ...] = (ImageCms.PyCMSError, *DECODER_ERRORS)


class ImageRejectedError(ValueError):
    """The bytes are not an image we accept; ``reason`` is a stable code for logs/metrics."""

    def __init__(self, reason: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


@dataclass
class CleanImage:
    """A re-encoded image: the main file plus any fixed-size variants (avatars)."""

    format: Format
    width: int
    height: int
    data: bytes
    variants: dict[int, bytes] = field(default_factory=dict)


def sniff(head: bytes) -> Format | None:
    """The format named by the file's first bytes, or None. Names and headers are ignored."""
    if head.startswith(b"\xff\xd8\xff"):
        return FORMATS["JPEG"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FORMATS["PNG"]
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return FORMATS["GIF"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FORMATS["WEBP"]
    return None


NOT_AN_IMAGE = ImageRejectedError(
    "not_an_image",
    "Only JPEG, PNG, GIF and WebP images are accepted, and this file is not one of them.",
    415,
)


def process(data: bytes, *, kind: str) -> CleanImage:
    """Check ``data`` and return a clean re-encoding; raise ImageRejectedError with the reason."""
    fmt = sniff(data[:16])
    if fmt is None:
        raise NOT_AN_IMAGE
    if fmt.name == "JPEG":
        _check_jpeg_scans(data)
    if not DECODE_SLOTS.acquire(timeout=DECODE_WAIT_SECONDS):
        raise ImageRejectedError(
            "busy", "Images are being processed for others just now; try again in a minute.", 503
        )
    try:
        return _decode_and_encode(data, fmt, kind=kind)
    finally:
        DECODE_SLOTS.release()


def _decode_and_encode(data: bytes, fmt: Format, *, kind: str) -> CleanImage:
    try:
        with Image.open(io.BytesIO(data), formats=[fmt.name]) as im:
            animate = kind == "article" and fmt.name in ANIMATED
            _check_dimensions(im, animate=animate)
            loop = im.info.get("loop")  # read first: a still image's info is cleared
            colour = _ToSRGB.embedded(im)
            compact = kind == "article" and fmt.name == "PNG"
            frames = _decoded_frames(im, animate=animate, colour=colour, compact=compact)
            if kind == "avatar":
                return _within_stored_limit(_avatar(frames[0]), sent=len(data))
            lossless = fmt.name == "WEBP" and _webp_lossless(data)
            return _within_stored_limit(
                _article_image(fmt, frames, loop, lossless=lossless), sent=len(data)
            )
    except ImageRejectedError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels() from exc
    except DECODER_ERRORS as exc:
        raise _corrupt() from exc
    except Exception as exc:
        # Anything else from inside Pillow on hostile bytes is still a refusal of the file,
        # never a 500; logged with its type so a new failure mode can be looked at.
        log.warning(
            "unexpected image decoder failure",
            extra={"error_type": type(exc).__name__, "format": fmt.name},
            exc_info=True,
        )
        raise _corrupt() from exc


def _corrupt() -> ImageRejectedError:
    return ImageRejectedError(
        "corrupt", "The image could not be read; it may be damaged or incomplete."
    )


def _too_many_pixels() -> ImageRejectedError:
    return ImageRejectedError(
        "too_many_pixels",
        f"The image has too many pixels (at most {MAX_PIXELS // 1_000_000} megapixels).",
    )


def _within_stored_limit(clean: CleanImage, *, sent: int) -> CleanImage:
    """Refuse a cleaned image that would take more room than any honest upload needs.

    The header checks bound what is decoded, not what re-encoding writes: the same pixels
    can take far more bytes once stored (an animation whose frames cannot be stored as their
    changes, sharp patterns re-encoded lossy or scaled down), against the owner's quota and
    every reader's bandwidth. ``sent`` is the upload's size in bytes.
    """
    stored = len(clean.data) + sum(len(variant) for variant in clean.variants.values())
    if stored > MAX_STORED_BYTES:
        raise _too_large_after_cleaning()
    if stored > max(MAX_GROWTH * sent, GROWTH_FLOOR_BYTES):
        raise ImageRejectedError(
            "too_large_after_cleaning",
            f"Cleaned and re-encoded, this image would take more than {MAX_GROWTH} times "
            "the room of the file sent; upload a smaller picture, or for an animation "
            "fewer or smaller frames.",
        )
    return clean


def _too_large_after_cleaning() -> ImageRejectedError:
    return ImageRejectedError(
        "too_large_after_cleaning",
        f"Cleaned and re-encoded, this image would take more than "
        f"{MAX_STORED_BYTES // (1024 * 1024)} MB; upload a smaller picture, or for an "
        "animation fewer or smaller frames.",
    )


def _check_jpeg_scans(data: bytes) -> None:
    """Refuse a scan bomb before libjpeg sees it.

    Every scan starts with an SOS marker (FF DA), and entropy-coded data never holds that
    pair (an FF there is followed by 00 or a restart code), so counting the pair over the
    whole file bounds the scans libjpeg can run, in thumbnails and MPO frames too. A stray
    pair inside metadata only errs on the side of caution.
    """
    if data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise ImageRejectedError(
            "too_many_scans",
            f"The JPEG has too many progressive scans (at most {MAX_JPEG_SCANS}); "
            "save it again as a standard JPEG.",
        )


def _check_dimensions(im: Image.Image, *, animate: bool) -> None:
    """Refuse from the header alone, before a single pixel is decoded."""
    width, height = im.size
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise _too_many_pixels()
    frames = getattr(im, "n_frames", 1)
    if frames > MAX_FRAMES:
        raise ImageRejectedError(
            "too_many_frames", f"Animations may have at most {MAX_FRAMES} frames."
        )
    if animate and frames * width * height > MAX_TOTAL_PIXELS:
        raise ImageRejectedError("too_many_pixels", "The animation is too large to process.")


@dataclass
class _Frame:
    image: Image.Image
    duration: int


class _ToSRGB:
    """An upload's embedded colour profile, to bring its pixels into sRGB.

    An unreadable profile, one too large or too costly to apply (``bastion.uploads.icc``), or
    one that does not describe the image's mode is ignored (as every profile was before): the
    pixels decoded, the profile never reaches the stored file either way, and refusing the
    photo would give its owner nothing to fix.
    """

    def __init__(self, profile: ImageCms.ImageCmsProfile, space: str) -> None:
        self.profile = profile
        self.space = space
        self._transforms: dict[tuple[str, str], ImageCms.ImageCmsTransform] = {}

    @classmethod
    def embedded(cls, im: Image.Image) -> _ToSRGB | None:
        icc = im.info.get("icc_profile")
        if not icc or not isinstance(icc, bytes):
            return None
        if len(icc) > MAX_ICC_BYTES:
            _profile_ignored("too_large")
            return None
        if too_complex(icc):  # before littlecms allocates or computes what it declares
            _profile_ignored("too_complex")
            return None
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            space = profile.profile.xcolor_space
        except PROFILE_ERRORS:
            _profile_ignored("unreadable")
            return None
        if im.mode not in PROFILE_MODES.get(space, ()):
            _profile_ignored("wrong_colour_space")
            return None
        return cls(profile, space)

    def colours(self, rgb: bytes) -> bytes | None:
        """A palette's colours (RGB triples) in sRGB; None when the profile cannot do it."""
        if self.space != "RGB ":
            return None
        try:
            swatch = Image.frombytes("RGB", (len(rgb) // 3, 1), rgb)
            ImageCms.applyTransform(swatch, self._transform("RGB", "RGB"), inPlace=True)
        except ImageCms.PyCMSError:
            _profile_ignored("unusable")
            return None
        return swatch.tobytes()

    def _transform(self, in_mode: str, out_mode: str) -> ImageCms.ImageCmsTransform:
        key = (in_mode, out_mode)
        if key not in self._transforms:
            self._transforms[key] = ImageCms.buildTransform(self.profile, SRGB, in_mode, out_mode)
        return self._transforms[key]

    def apply(self, frame: Image.Image, mode: str, *, reuse: bool) -> Image.Image | None:
        """``frame`` in sRGB as ``mode`` (RGB or RGBA), making at most the one new image a
        mode conversion makes anyway; None when the profile does not describe this frame."""
        if self.space == "RGB " and frame.mode in PROFILE_MODES["RGB "]:
            transform = self._transform(mode, mode)  # before any copy: it may fail
            out = frame if reuse and frame.mode == mode else frame.convert(mode)
            ImageCms.applyTransform(out, transform, inPlace=True)  # the alpha band is kept
            return out
        if self.space == "CMYK" and frame.mode == "CMYK" and mode == "RGB":
            return ImageCms.applyTransform(frame, self._transform("CMYK", "RGB"))
        if self.space == "GRAY" and frame.mode in ("L", "LA"):
            # From L only: littlecms reads Pillow's LA (four bytes a pixel) as two pixels.
            grey = frame.getchannel("L") if frame.mode == "LA" else frame
            rgb = ImageCms.applyTransform(grey, self._transform("L", mode))
            del grey
            if rgb is not None and mode == "RGBA":
                # Alpha does not come through from L: put the frame's (band or grey key) back.
                if frame.mode == "LA":
                    alpha = frame.getchannel("A")
                else:
                    key = frame.info.get("transparency")
                    alpha = frame.point([0 if v == key else 255 for v in range(256)])
                rgb.putalpha(alpha)
            return rgb
        return None


def _profile_ignored(reason: str) -> None:
    log.info("image colour profile ignored", extra={"reason": reason})


def _decoded_frames(
    im: Image.Image, *, animate: bool, colour: _ToSRGB | None = None, compact: bool = False
) -> list[_Frame]:
    """Decode the frames kept fully (a truncated file fails here) into fresh RGB/RGBA images,
    or with ``compact`` a still in its own mode when it is one of ``COMPACT_MODES``.

    Only an article's GIF or WebP animation keeps its frames. Anything else is a still: its
    first frame, decoded alone and turned upright. A phone's JPEG is often an MPO whose
    second frame is an HDR gain map or a depth map; decoding it too cost memory and, as the
    file then looked animated, the photo was stored on its side.
    """
    frames: list[_Frame] = []
    still = not animate or getattr(im, "n_frames", 1) == 1
    budget = MAX_TOTAL_PIXELS
    for frame in ImageSequence.Iterator(im):
        # The header's size is not every frame's: a GIF frame placed past the logical screen
        # grows the canvas for it and all later frames, an MPO frame is a JPEG with its own
        # size. Count each frame as seeked, before it is decoded, against the same budget.
        budget -= frame.width * frame.height
        if budget < 0:
            raise ImageRejectedError("too_many_pixels", "The animation is too large to process.")
        frame.load()
        if still:
            # Honour the camera's orientation before the EXIF tag that carries it is dropped.
            ImageOps.exif_transpose(frame, in_place=True)
        clean = _compact(frame, colour) if compact and still else None
        if clean is None:
            clean = _pixels_only(frame, reuse=still, colour=colour)
            clean.info = {}  # nothing from the upload's metadata may reach the encoder
        frames.append(_Frame(clean, int(frame.info.get("duration", 0) or 0)))
        if still:
            break
    if not frames:
        raise ImageRejectedError("corrupt", "The image has no frames.")
    return frames


def _pixels_only(frame: Image.Image, *, reuse: bool, colour: _ToSRGB | None = None) -> Image.Image:
    """The frame as RGB or RGBA in sRGB, copied only when it must be.

    A still image already in that mode is used as it is: each copy of a 25-megapixel image
    is another 100 MB, and with a copy for the orientation and one for the mode a single
    upload took 330-530 MB, so two at once could exhaust a 1 GiB worker. Animation frames
    are always copied, as seeking to the next frame overwrites the decoded one. A colour
    profile is applied in place, or while converting the mode (CMYK, grey).
    """
    has_alpha = frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info
    mode = "RGBA" if has_alpha else "RGB"
    if frame.mode in WIDE_GREY_MODES:
        frame, reuse = _eight_bit_grey(frame), True
    if colour is not None:
        try:
            converted = colour.apply(frame, mode, reuse=reuse)
        except ImageCms.PyCMSError:
            _profile_ignored("unusable")  # e.g. no table littlecms can build a transform from
            converted = None
        if converted is not None:
            return converted
    if reuse and frame.mode == mode:
        return frame
    return frame.convert(mode)


def _compact(frame: Image.Image, colour: _ToSRGB | None) -> Image.Image | None:
    """A still frame in its own mode (``COMPACT_MODES``, 16-bit grey as 8-bit), with an
    ``info`` of nothing but a palette's transparency; None when it must become RGB/RGBA (a
    grey key colour, a grey profile, or a mode of three or four bytes a pixel anyway)."""
    if frame.mode in WIDE_GREY_MODES and colour is None:
        return _eight_bit_grey(frame)
    if frame.mode == "P":
        return _clean_palette(frame, colour)
    if frame.mode in COMPACT_MODES and colour is None and "transparency" not in frame.info:
        frame.info = {}
        return frame
    return None


def _clean_palette(frame: Image.Image, colour: _ToSRGB | None) -> Image.Image | None:
    """A palette frame with only the colours its pixels use (an unused entry could carry
    anything), in sRGB by ``colour`` (one transform of at most 256 colours, not of every
    pixel), and their transparency; the pixels are kept as they are."""
    used = [index for _, index in frame.getcolors(256) or [] if isinstance(index, int)]
    if not used:
        return None
    size = max(used) + 1
    palette = (frame.getpalette("RGB") or []) + [0] * 3 * size
    colours = [0] * 3 * size
    for index in used:
        colours[3 * index : 3 * index + 3] = palette[3 * index : 3 * index + 3]
    converted = colour.colours(bytes(colours)) if colour is not None else None
    if converted is not None:  # else the profile is ignored, as one that fails on pixels
        colours = list(converted)
    alpha = frame.info.get("transparency")
    frame.info = {}
    if isinstance(alpha, int) and alpha in used:
        frame.info["transparency"] = alpha
    elif isinstance(alpha, bytes):
        alphas = alpha[:size].ljust(size, b"\xff")
        frame.info["transparency"] = bytes(a if i in used else 255 for i, a in enumerate(alphas))
    frame.putpalette(colours, "RGB")
    return frame


def _eight_bit_grey(frame: Image.Image) -> Image.Image:
    """A 16-bit greyscale PNG frame as 8-bit ``L`` (or ``LA`` for its transparent grey).

    Pillow's own conversion clips every value above 255 instead of scaling, so a 16-bit scan
    or export came out a blank white image (and its transparency fell on black instead).
    """
    wide = frame if frame.mode in ("I", "I;16") else frame.convert("I")
    grey = wide.point(lambda v: v / 257).convert("L")
    key = frame.info.get("transparency")
    if isinstance(key, int):
        table = [0 if v == key else 255 for v in range(65536)]
        grey.putalpha(wide.convert("I").point(table, "L"))
    grey.info = {}
    return grey


class _StoredBytes(io.BytesIO):
    """The encoder's output, refused as soon as it passes ``MAX_STORED_BYTES``: an animation
    that would come out at 55 MB is not written out whole (a second of the decode slot and
    the memory) only to be refused."""

    def write(self, data: ReadableBuffer, /) -> int:
        if self.tell() + memoryview(data).nbytes > MAX_STORED_BYTES:
            raise _too_large_after_cleaning()
        return super().write(data)


def _webp_lossless(data: bytes) -> bool:
    """Whether every picture in the WebP is lossless: VP8L, at the top of its RIFF container
    (a still) or inside each of its ANMF frames (an animation), and no lossy VP8 anywhere.

    Pillow decodes through libwebp and does not say so (nothing in ``info``, and an
    animation's frames come out as RGBA whatever their encoding), so the chunks are read
    here, within the RIFF's declared size, each header from the bytes that hold it and at
    most ``WEBP_MAX_CHUNKS`` in all (past that, lossy as before): a file of a million empty
    chunks costs no more time than an honest one. An animation with any lossy frame stays
    lossy: 99 frames of lossy noise and one lossless frame, stored lossless, held the
    decode slot 9 s before ``MAX_STORED_BYTES`` refused them.
    """
    end = min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    spans, read, found = [(12, end)], 0, set()
    while spans:
        offset, stop = spans.pop()
        while offset + 8 <= stop:
            read += 1
            if read > WEBP_MAX_CHUNKS:
                return False
            kind = data[offset : offset + 4]
            size = int.from_bytes(data[offset + 4 : offset + 8], "little")
            if kind in (b"VP8 ", b"VP8L"):
                found.add(kind)
            elif kind == b"ANMF":  # 16 bytes of frame header, then the frame's own chunks
                spans.append((offset + 8 + 16, min(offset + 8 + size, stop)))
            offset += 8 + size + (size & 1)
    return found == {b"VP8L"}


def _encode(image: Image.Image, fmt: Format, *, lossless: bool = False, **options: object) -> bytes:
    out = _StoredBytes()
    if fmt.name == "JPEG":
        image = image.convert("RGB") if image.mode != "RGB" else image
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif fmt.name == "WEBP" and lossless:
        image.save(out, "WEBP", **WEBP_LOSSLESS_OPTIONS, **options)
    elif fmt.name == "WEBP":
        image.save(out, "WEBP", quality=JPEG_QUALITY, **options)
    elif fmt.name == "PNG":
        image.save(out, "PNG", compress_level=_png_level(image), **options)
    else:
        image.save(out, fmt.name, optimize=True, **options)
    return out.getvalue()


def _png_level(image: Image.Image) -> int:
    """The zlib level for ``image``: ``PNG_LEVELS`` by the bytes of its pixels."""
    bits = 1 if image.mode == "1" else 8 * len(image.getbands())
    size = (image.width * bits + 7) // 8 * image.height
    return next((level for most, level in PNG_LEVELS if size <= most), PNG_LARGE_LEVEL)


def _article_image(
    fmt: Format, frames: list[_Frame], loop: object, *, lossless: bool = False
) -> CleanImage:
    """The article's image in its own format; a lossless WebP stays lossless, as lossy
    WebP made a 12 KB checkerboard animation 9 MB and kept none of its pixels exact."""
    for frame in frames:
        if max(frame.image.size) > ARTICLE_MAX_SIDE:
            frame.image = _resizable(frame.image)
        frame.image.thumbnail((ARTICLE_MAX_SIDE, ARTICLE_MAX_SIDE))
    disposal = _into_one_palette(frames) if fmt.name == "GIF" else None
    first = frames[0].image
    if len(frames) > 1 and fmt.name in ("GIF", "WEBP"):
        options: dict[str, object] = {
            "save_all": True,
            "append_images": [f.image for f in frames[1:]],
            "duration": [max(f.duration, 20) for f in frames],
        }
        # A GIF without a loop count plays once (its last frame is the picture); given
        # Pillow's ``loop=0`` it would repeat forever. A WebP always has one.
        if isinstance(loop, int):
            options["loop"] = loop
        if disposal is not None:
            options["disposal"] = disposal
        data = _encode(first, fmt, lossless=lossless, **options)
    else:
        data = _encode(first, fmt, lossless=lossless)
    return CleanImage(fmt, first.width, first.height, data)


def _resizable(image: Image.Image) -> Image.Image:
    """``image`` in a mode Pillow scales down smoothly: it takes every pixel of a 1-bit or
    palette image as it is (nearest neighbour), which turned fine dithering into moire."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    return image


# Alpha below half is a GIF's transparent index, at or above it an opaque colour.
_CLEAR = [255] * 128 + [0] * 128


def _into_one_palette(frames: list[_Frame]) -> int:
    """Put a GIF's frames into one shared palette, in place; return the disposal to save with.

    Each frame quantised on its own got its own palette, so an unchanged pixel rarely kept
    its colour, and with disposal 2 every frame was written whole: a 600 KB GIF of 100
    noisy frames differing by a pixel was stored as 55 MB. With one palette and no disposal
    (1), Pillow stores each frame as the box around what changed, unchanged pixels in it
    marked transparent. That is exact unless a pixel turns transparent: with nothing
    disposed, the previous frame would show through it. Such an animation (a sprite moving
    over a clear background) keeps disposal 2, each frame drawn on a cleared canvas.
    """
    palette = _SharedPalette.of([f.image for f in frames])
    transparent = any(f.image.mode == "RGBA" for f in frames)
    deltas_exact = len({f.image.size for f in frames}) == 1
    previous: Image.Image | None = None  # the last frame's transparent pixels (255), if any
    for number, frame in enumerate(frames):
        indexed = palette.indexed(frame.image)
        clear = _clear_pixels(frame.image)
        if clear is not None:
            indexed.paste(palette.clear_index, mask=clear)
            if number and _turns_clear(clear, previous):
                deltas_exact = False
        indexed.info = {"transparency": palette.clear_index} if transparent else {}
        frame.image, previous = indexed, clear
    return 1 if deltas_exact else 2


def _clear_pixels(image: Image.Image) -> Image.Image | None:
    """A mask of the frame's transparent pixels (255), or None when it has none."""
    if image.mode != "RGBA":
        return None
    clear = image.getchannel("A").point(_CLEAR)
    return clear if clear.getbbox() is not None else None


def _turns_clear(clear: Image.Image, before: Image.Image | None) -> bool:
    """Whether a pixel transparent now was opaque in the frame before (``before``'s mask)."""
    return before is None or ImageChops.subtract(clear, before).getbbox() is not None


class _SharedPalette:
    """At most ``GIF_COLOURS`` colours for every frame of a GIF, and the index left free.

    Pillow maps a pixel to a palette by its top six bits a channel, so colours a level or
    two apart would fall together. When the colours are the frames' own (``exact``) and every
    channel has at most 64 values, ``spread`` (``Image.point`` tables) first moves each value
    to a step of its own, and the colours come through exactly. Chosen by octree, they are
    not every pixel's: the tables would send a value they do not hold to 0 (a red off by 232).
    """

    def __init__(self, colours: list[tuple[int, int, int]], *, exact: bool = False) -> None:
        self.colours = colours or [(0, 0, 0)]
        self.clear_index = len(self.colours)
        self.spread = _spread_tables(self.colours) if exact else None
        self._target = Image.new("P", (1, 1))
        self._target.putpalette(_flat(self.colours if self.spread is None else [
            (self.spread[r], self.spread[256 + g], self.spread[512 + b])
            for r, g, b in self.colours
        ]))

    @classmethod
    def of(cls, images: list[Image.Image]) -> _SharedPalette:
        """The frames' own colours when they have few enough between them (most GIFs: one
        palette); otherwise fast octree over pixels sampled evenly from every frame.

        Pillow's default median cut, about 250 ns a pixel, held the decode slot for 9-12 s
        on 40 megapixels of noise, past ``DECODE_WAIT_SECONDS``, so every upload queued
        behind it was told to retry. Fast octree costs a tenth of that on the whole frame,
        and it is given a sample here.
        """
        exact = _few_colours(images)
        if exact is not None:
            return cls(sorted(exact), exact=True)
        return cls(_octree_colours(images))

    def indexed(self, image: Image.Image) -> Image.Image:
        """``image`` (RGB or RGBA) in this palette by nearest colour, undithered: an
        unchanged pixel keeps its index from frame to frame."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if self.spread is not None:
            rgb = rgb.point(self.spread)
        indexed = rgb.quantize(palette=self._target, dither=Image.Dither.NONE)
        indexed.putpalette(_flat([*self.colours, (0, 0, 0)]))
        return indexed


def _flat(colours: list[tuple[int, int, int]]) -> list[int]:
    return [value for colour in colours for value in colour]


def _spread_tables(colours: list[tuple[int, int, int]]) -> list[int] | None:
    """``Image.point`` tables giving each value a channel takes a step of 4 of its own,
    or None when a channel has more than 64 values."""
    tables: list[int] = []
    for channel in range(3):
        values = sorted({colour[channel] for colour in colours})
        if len(values) > 64:
            return None
        table = [0] * 256
        for step, value in enumerate(values):
            table[value] = 4 * step
        tables += table
    return tables


def _few_colours(images: list[Image.Image]) -> set[tuple[int, int, int]] | None:
    """The opaque colours of all frames together, or None past ``GIF_COLOURS``."""
    found: set[tuple[int, int, int]] = set()
    for image in images:
        counted = image.getcolors(GIF_COLOURS * 2 if image.mode == "RGBA" else GIF_COLOURS)
        if counted is None:
            return None
        for _, colour in counted:
            if isinstance(colour, tuple) and (len(colour) == 3 or colour[3] >= 128):
                found.add((colour[0], colour[1], colour[2]))
        if len(found) > GIF_COLOURS:
            return None
    return found


def _octree_colours(images: list[Image.Image]) -> list[tuple[int, int, int]]:
    """``GIF_COLOURS`` colours by fast octree over ``PALETTE_SAMPLE_PIXELS`` taken evenly
    from every frame."""
    per_frame = PALETTE_SAMPLE_PIXELS / len(images)
    samples = []
    for image in images:
        scale = min(1.0, (per_frame / (image.width * image.height)) ** 0.5)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        samples.append(image.resize(size, Image.Resampling.NEAREST).convert("RGB"))
    sheet = Image.new("RGB", (max(s.width for s in samples), sum(s.height for s in samples)))
    top = 0
    for sample in samples:
        sheet.paste(sample, (0, top))
        top += sample.height
    quantised = sheet.quantize(GIF_COLOURS, method=Image.Quantize.FASTOCTREE)
    values = (quantised.getpalette() or [])[: GIF_COLOURS * 3]
    return [(values[i], values[i + 1], values[i + 2]) for i in range(0, len(values) - 2, 3)]


def _avatar(frame: _Frame) -> CleanImage:
    """Square crops at fixed sizes; PNG keeps transparency, JPEG otherwise."""
    fmt = FORMATS["PNG"] if frame.image.mode == "RGBA" else FORMATS["JPEG"]
    big, *small = AVATAR_SIZES
    crops = {size: ImageOps.fit(frame.image, (size, size)) for size in AVATAR_SIZES}
    for crop in crops.values():
        crop.info = {}
    return CleanImage(
        fmt,
        big,
        big,
        _encode(crops[big], fmt),
        variants={size: _encode(crops[size], fmt) for size in small},
    )


def name_extension_allowed(extension: str) -> bool:
    """A file name may have no extension or an image one; ``.php``/``.svg``/... are refused."""
    return not extension or extension.lower() in NAME_EXTENSIONS
