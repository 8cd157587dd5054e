"""Shrink a screenshot to a 256-colour PNG, in plain Python: the PNGs of docs/screenshots/ are
committed, the machine has no image tool, and flat UI colours survive a palette with no visible
loss (the rare in-between colours of anti-aliased edges go to the nearest kept colour).

Reads what Chromium writes (8-bit RGB or RGBA, not interlaced) and nothing else."""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    position = len(SIGNATURE)
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        yield kind, data[position + 8 : position + 8 + length]
        position += 12 + length


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    if kind == 1:
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 255
    elif kind == 2:
        line = bytearray((a + b) & 255 for a, b in zip(line, previous, strict=True))
    elif kind in (3, 4):
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            corner = previous[i - bpp] if i >= bpp else 0
            guess = (left + previous[i]) >> 1 if kind == 3 else _paeth(left, previous[i], corner)
            line[i] = (line[i] + guess) & 255
    return line


def read_pixels(data: bytes) -> tuple[int, int, list[list[bytes]]]:
    """Width, height and rows of RGB pixels (alpha dropped: screenshots are opaque)."""
    idat = b"".join(body for kind, body in _chunks(data) if kind == b"IDAT")
    header = next(body for kind, body in _chunks(data) if kind == b"IHDR")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"not an 8-bit RGB(A) PNG: depth {depth}, colour type {colour}")
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        previous = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, bpp)
        rows.append([bytes(previous[i : i + 3]) for i in range(0, stride, bpp)])
    return width, height, rows


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def to_palette(path: Path) -> None:
    """Rewrite `path` as an indexed PNG of its 256 commonest colours."""
    width, height, rows = read_pixels(path.read_bytes())
    palette = [colour for colour, _ in Counter(p for row in rows for p in row).most_common(256)]
    index = {colour: i for i, colour in enumerate(palette)}

    def nearest(colour: bytes) -> int:
        """The kept colour closest to `colour`, weighted roughly as the eye weighs R, G and B."""
        return min(
            range(len(palette)),
            key=lambda i: sum(
                w * (k - c) ** 2 for w, k, c in zip((3, 4, 2), palette[i], colour, strict=True)
            ),
        )

    out = bytearray()
    for row in rows:
        out.append(0)
        for colour in row:
            if colour not in index:
                index[colour] = nearest(colour)
            out.append(index[colour])
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    path.write_bytes(
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"PLTE", b"".join(palette))
        + _chunk(b"IDAT", zlib.compress(bytes(out), 9))
        + _chunk(b"IEND", b"")
    )
