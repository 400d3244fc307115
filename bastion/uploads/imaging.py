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

from PIL import Image, ImageCms, ImageOps, ImageSequence

from bastion.uploads.icc import too_complex

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
GIF_COLOURS = 256
# One image decoded at a time per process: a 25-megapixel image takes 300-470 MB while it
# is re-encoded, and a worker's threads took four at once to 1.7 GB, past a 1 GiB container.
# A request waits its turn at most this long, then is told to try again: one image takes
# about a second, and a waiting request holds one of the worker's threads, so uploads
# queued behind each other must not hold them all for long.
DECODE_SLOTS = threading.BoundedSemaphore(1)
DECODE_WAIT_SECONDS = 10.0
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
            frames = _decoded_frames(im, animate=animate, colour=colour)
            if kind == "avatar":
                return _avatar(frames[0])
            return _article_image(fmt, frames, loop)
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
    im: Image.Image, *, animate: bool, colour: _ToSRGB | None = None
) -> list[_Frame]:
    """Decode the frames kept fully (a truncated file fails here) into fresh RGB/RGBA images.

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


def _encode(image: Image.Image, fmt: Format, **options: object) -> bytes:
    out = io.BytesIO()
    if fmt.name == "JPEG":
        image = image.convert("RGB") if image.mode != "RGB" else image
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif fmt.name == "WEBP":
        image.save(out, "WEBP", quality=JPEG_QUALITY, **options)
    else:
        image.save(out, fmt.name, optimize=True, **options)
    return out.getvalue()


def _in_palette(image: Image.Image) -> Image.Image:
    """An RGB frame in a GIF's 256 colours by fast octree; other modes are left to Pillow.

    Pillow quantises an RGB frame by median cut, about 250 ns a pixel: a 600 KB GIF of 100
    frames of noise that differ by one pixel (40 megapixels, within ``MAX_TOTAL_PIXELS``)
    held the decode slot for 9-12 s, past ``DECODE_WAIT_SECONDS``, so every upload queued
    behind it was told to retry. Fast octree, which Pillow already uses for frames with
    transparency, costs a tenth of that and errs by a few levels at most.
    """
    if image.mode != "RGB":
        return image
    return image.quantize(GIF_COLOURS, method=Image.Quantize.FASTOCTREE)


def _article_image(fmt: Format, frames: list[_Frame], loop: object) -> CleanImage:
    for frame in frames:
        frame.image.thumbnail((ARTICLE_MAX_SIDE, ARTICLE_MAX_SIDE))
        if fmt.name == "GIF":
            frame.image = _in_palette(frame.image)
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
        if fmt.name == "GIF":
            options["disposal"] = 2  # each frame replaces the last; no stale pixels
        data = _encode(first, fmt, **options)
    else:
        data = _encode(first, fmt)
    return CleanImage(fmt, first.width, first.height, data)


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
