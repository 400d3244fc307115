"""An embedded colour profile's tables, judged from its bytes before littlecms reads them.

littlecms sizes a colour table from the few header bytes that describe it and allocates
it, zeroed, before reading any of it: a 400-byte profile claiming a 255-point grid of 15
channels took half a gigabyte. Its float pipelines (``mpet``, the D2Bx/B2Dx tags) cost
time instead: their stages may all point at one set of long segmented curves, tabulated
again for each, and a 450-byte PNG kept a worker busy for 40 seconds. So a profile is
passed on only when every table it declares lies inside the tag that holds it (memory then
stays within a few times the profile's size) and it has no float pipeline, a form photos
hardly ever carry (their profiles are matrices and curves, or 8- and 16-bit tables).
"""

from __future__ import annotations

import math
import struct

HEADER_BYTES = 128
TAG_ENTRY = struct.Struct(">4sII")  # signature, offset, size
# littlecms refuses a profile with more tags than this (MAX_TABLE_TAG).
MAX_TAGS = 100
LUT8, LUT16 = b"mft1", b"mft2"
A_TO_B, B_TO_A = b"mAB ", b"mBA "
FLOAT_PIPELINE = b"mpet"


def too_complex(icc: bytes) -> bool:
    """Whether ``icc`` declares tables larger than its bytes, or a float pipeline."""
    data = memoryview(icc)
    try:
        (count,) = struct.unpack_from(">I", data, HEADER_BYTES)
        if count > MAX_TAGS:
            return True
        for index in range(count):
            _sig, offset, size = TAG_ENTRY.unpack_from(data, HEADER_BYTES + 4 + 12 * index)
            # A tag that runs past the end is skipped by littlecms, so here too.
            if offset + size <= len(data) and _tag_too_complex(data[offset : offset + size]):
                return True
    except (struct.error, IndexError):
        return True  # cut short where littlecms would read on
    return False


def _tag_too_complex(tag: memoryview) -> bool:
    kind = bytes(tag[:4])
    if kind == FLOAT_PIPELINE:
        return True
    if kind in (LUT8, LUT16):
        inputs, outputs, points = tag[8], tag[9], tag[10]
        width = 1 if kind == LUT8 else 2
        return int(points**inputs) * outputs * width > len(tag)
    if kind in (A_TO_B, B_TO_A):
        inputs, outputs = tag[8], tag[9]
        (at,) = struct.unpack_from(">I", tag, 24)  # the grid's offset; 0 when there is none
        if not at:
            return False
        grid, width = tag[at : at + 16], tag[at + 16]
        # littlecms allocates before it looks at the precision: 0 or 3 costs as much as 2.
        return width not in (1, 2) or (
            int(math.prod(grid[:inputs])) * outputs * width > len(tag) - at - 20
        )
    return False
