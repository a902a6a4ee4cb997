"""The extension's icon, drawn here: a PNG of rising bars, so no binary file lives in the repository."""

from __future__ import annotations

import struct
import zlib

SIZE = 512  # what Claude Desktop displays best
_BACKGROUND = bytes((24, 61, 97))
_BARS = bytes((120, 200, 255))
# (left, width, height) of each bar, in pixels of a SIZE x SIZE image, rising left to right.
_BAR_SHAPES = ((80, 72, 160), (176, 72, 240), (272, 72, 312), (368, 72, 384))
_BASELINE = 448


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _row(y: int) -> bytes:
    row = bytearray(_BACKGROUND * SIZE)
    for left, width, height in _BAR_SHAPES:
        if _BASELINE - height <= y < _BASELINE:
            row[left * 3 : (left + width) * 3] = _BARS * width
    return b"\x00" + bytes(row)  # filter byte 0 (none) before each row


def icon_png() -> bytes:
    """A square RGB PNG of ``SIZE`` pixels."""
    rows = b"".join(_row(y) for y in range(SIZE))
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )
