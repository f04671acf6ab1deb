"""A Snappy block decoder (the raw block format, not the framed one), for
compressed tiercache payloads, in pure Python."""

from __future__ import annotations

from typing import Tuple

__all__ = ["SnappyError", "decoded_len", "decompress"]


class SnappyError(ValueError):
    """The bytes are not a valid Snappy block."""


def _uvarint(b: bytes, i: int) -> Tuple[int, int]:
    x = shift = 0
    for n in range(10):
        if i + n >= len(b):
            raise SnappyError("truncated length")
        c = b[i + n]
        if n == 9 and c > 1:
            raise SnappyError("length overflows 64 bits")
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, i + n + 1
        shift += 7
    raise SnappyError("length overflows 64 bits")


def decoded_len(block: bytes) -> Tuple[int, int]:
    """The uncompressed length a block claims, and where its elements
    start. Snappy limits a block to 2^32 - 1 bytes."""
    n, i = _uvarint(block, 0)
    if n > 0xFFFFFFFF:
        raise SnappyError("claimed length over 2^32 - 1")
    return n, i


def decompress(block: bytes) -> bytes:
    """Decodes a Snappy block; raises :class:`SnappyError` for anything
    malformed (an offset before the start, a length that does not match)."""
    n, i = decoded_len(block)
    out = bytearray()
    end = len(block)
    while i < end:
        tag = block[i]
        kind = tag & 3
        if kind == 0:  # literal
            ln = tag >> 2
            i += 1
            if ln >= 60:
                extra = ln - 59
                if i + extra > end:
                    raise SnappyError("truncated literal length")
                ln = int.from_bytes(block[i : i + extra], "little")
                i += extra
            ln += 1
            if i + ln > end:
                raise SnappyError("truncated literal")
            out += block[i : i + ln]
            i += ln
        else:
            if kind == 1:
                if i + 2 > end:
                    raise SnappyError("truncated copy")
                ln = 4 + ((tag >> 2) & 7)
                off = ((tag >> 5) << 8) | block[i + 1]
                i += 2
            elif kind == 2:
                if i + 3 > end:
                    raise SnappyError("truncated copy")
                ln = 1 + (tag >> 2)
                off = int.from_bytes(block[i + 1 : i + 3], "little")
                i += 3
            else:
                if i + 5 > end:
                    raise SnappyError("truncated copy")
                ln = 1 + (tag >> 2)
                off = int.from_bytes(block[i + 1 : i + 5], "little")
                i += 5
            if off == 0 or off > len(out):
                raise SnappyError("copy offset out of range")
            if len(out) + ln > n:
                raise SnappyError("more output than the claimed length")
            start = len(out) - off
            if off >= ln:
                out += out[start : start + ln]
            else:  # overlapping: repeat the last off bytes
                while ln > 0:
                    chunk = out[start : start + min(off, ln)]
                    out += chunk
                    ln -= len(chunk)
                    start += len(chunk)
        if len(out) > n:
            raise SnappyError("more output than the claimed length")
    if len(out) != n:
        raise SnappyError(f"decoded {len(out)} bytes, the block claims {n}")
    return bytes(out)
