"""Image size from the file header, read before any pixel is decoded.

A decoder allocates H x W x C bytes as soon as it has read the header, so a 40 kB PNG that claims
100,000 x 100,000 pixels (a "decompression bomb") can take 30 GB. We read the dimensions ourselves
from the first bytes of the common formats and refuse oversized images before calling OpenCV.

Formats: PNG, JPEG (baseline and progressive SOF markers), BMP, GIF, WebP (VP8, VP8L, VP8X),
TIFF (first IFD), PNM (P1-P6). Anything else is not an image we decode.
"""
from __future__ import annotations

import struct

__all__ = ["image_format_and_size"]

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_format_and_size(data: bytes) -> tuple[str, int, int]:
    """Return `(format, height, width)` read from an encoded image's header.

    Args:
        data: the encoded file's bytes (the whole file; only the header is parsed).

    Raises:
        ValueError: the bytes are not a supported image, or the header is truncated or corrupt.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("png",) + _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return ("jpeg",) + _jpeg_size(data)
    if data.startswith(b"BM"):
        return ("bmp",) + _bmp_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ("gif",) + _gif_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp",) + _webp_size(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ("tiff",) + _tiff_size(data)
    if len(data) >= 2 and data[0:1] == b"P" and data[1:2] in b"123456":
        return ("pnm",) + _pnm_size(data)
    head = data[:16]
    raise ValueError(
        f"not a supported image: the data starts with {head!r}; expected PNG, JPEG, BMP, GIF, "
        "WebP, TIFF or PNM"
    )


def _need(data: bytes, n: int, fmt: str) -> None:
    if len(data) < n:
        raise ValueError(f"truncated {fmt} header: {len(data)} bytes, need at least {n}")


def _png_size(data: bytes) -> tuple[int, int]:
    _need(data, 24, "PNG")
    if data[12:16] != b"IHDR":
        raise ValueError("corrupt PNG: the first chunk is not IHDR")
    width, height = struct.unpack(">II", data[16:24])
    _check_png_chunks(data)
    return height, width


def _check_png_chunks(data: bytes) -> None:
    """Every chunk must fit in the data: libpng (through OpenCV) allocates a chunk's declared
    length before reading it, so a 100-byte file declaring a 4 GB chunk would take 4 GB."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if length > 0x7FFFFFFF or pos + 12 + length > len(data):
            raise ValueError(
                f"corrupt or truncated PNG: chunk {kind!r} at byte {pos} declares {length} bytes, "
                f"{len(data) - pos - 12} are left"
            )
        if kind == b"IEND":
            return
        pos += 12 + length


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"corrupt JPEG: expected a marker at byte {i}, got 0x{data[i]:02x}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            _need(data, i + 9, "JPEG")
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return height, width
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise ValueError("truncated or corrupt JPEG: no frame header (SOF marker) found")


def _bmp_size(data: bytes) -> tuple[int, int]:
    _need(data, 26, "BMP")
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(height), abs(width)


def _gif_size(data: bytes) -> tuple[int, int]:
    _need(data, 10, "GIF")
    width, height = struct.unpack("<HH", data[6:10])
    return height, width


def _webp_size(data: bytes) -> tuple[int, int]:
    _need(data, 30, "WebP")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L":
        b = data[21:25]
        width = 1 + (((b[1] & 0x3F) << 8) | b[0])
        height = 1 + (((b[3] & 0x0F) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return height, width
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return height, width
    raise ValueError(f"corrupt WebP: unknown chunk {chunk!r}")


def _tiff_size(data: bytes) -> tuple[int, int]:
    endian = "<" if data[:2] == b"II" else ">"
    _need(data, 8, "TIFF")
    (offset,) = struct.unpack(endian + "I", data[4:8])
    _need(data, offset + 2, "TIFF")
    (count,) = struct.unpack(endian + "H", data[offset : offset + 2])
    width = height = None
    for k in range(count):
        entry = offset + 2 + 12 * k
        _need(data, entry + 12, "TIFF")
        tag, kind = struct.unpack(endian + "HH", data[entry : entry + 4])
        if kind == 3:  # SHORT
            (value,) = struct.unpack(endian + "H", data[entry + 8 : entry + 10])
        else:
            (value,) = struct.unpack(endian + "I", data[entry + 8 : entry + 12])
        if tag == 256:
            width = value
        elif tag == 257:
            height = value
    if width is None or height is None:
        raise ValueError("corrupt TIFF: no ImageWidth/ImageLength in the first directory")
    return height, width


def _pnm_size(data: bytes) -> tuple[int, int]:
    tokens: list[bytes] = []
    for line in data[2:256].splitlines():
        line = line.split(b"#", 1)[0]
        tokens.extend(line.split())
        if len(tokens) >= 2:
            break
    try:
        width, height = int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError) as exc:
        raise ValueError("truncated or corrupt PNM header") from exc
    return height, width
