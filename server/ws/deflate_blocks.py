"""Deflate blocks (RFC 1951) made by hand, for the bytes of a frame that differ per socket.

A permessage-deflate message is any sequence of deflate blocks, so a frame can be put together
from pieces made apart: a socket's own bytes (its operation's id) in a block of its own, then the
payload that every subscriber shares, compressed once. Each piece starts and ends on a byte
boundary, so they concatenate."""

from __future__ import annotations

import struct

TAIL = b"\x00\x00\xff\xff"  # what a sync flush ends with; RFC 7692 leaves it off the wire
MIN_MATCH = 3
MAX_MATCH = 258
MAX_DISTANCE = 32768


def stored_block(data: bytes) -> bytes:
    """`data` as one non-final stored block (3.2.4), starting and ending on a byte boundary, so
    any deflate data may follow it in the same message."""
    return b"\x00" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


def _ranges(first_base: int, plain: int, groups: int, per_group: int) -> list[tuple[int, int]]:
    """(base, extra bits) of each code: `plain` codes with no extra bits, then `groups` groups of
    `per_group` codes with 1, 2, ... extra bits (the shape of both tables in 3.2.5)."""
    table = [(first_base + i, 0) for i in range(plain)]
    base = first_base + plain
    for extra in range(1, groups + 1):
        for _ in range(per_group):
            table.append((base, extra))
            base += 1 << extra
    return table


LENGTHS = [*_ranges(3, 8, 5, 4), (258, 0)]  # codes 257-285
DISTANCES = _ranges(1, 4, 13, 2)  # codes 0-29


def _code(table: list[tuple[int, int]], value: int) -> tuple[int, int, int]:
    """(code, extra bits, their value) for a length or a distance."""
    for code in range(len(table) - 1, -1, -1):
        base, extra = table[code]
        if value >= base:
            return code, extra, value - base
    raise ValueError(value)


class _Bits:
    """Bits packed as deflate packs them: from the least significant bit of each byte."""

    def __init__(self) -> None:
        self.value = 0
        self.count = 0

    def put(self, value: int, count: int) -> None:
        self.value |= value << self.count
        self.count += count

    def put_huffman(self, code: int, count: int) -> None:
        """A Huffman code goes most significant bit first (3.1.1)."""
        self.put(int(f"{code:0{count}b}"[::-1], 2), count)

    def to_bytes(self) -> bytes:
        return self.value.to_bytes((self.count + 7) // 8, "little")


def _fixed_literal_length(bits: _Bits, symbol: int) -> None:
    """A literal/length symbol in the fixed Huffman code (3.2.6)."""
    if symbol < 144:
        bits.put_huffman(0x30 + symbol, 8)
    elif symbol < 256:
        bits.put_huffman(0x190 + symbol - 144, 9)
    elif symbol < 280:
        bits.put_huffman(symbol - 256, 7)
    else:
        bits.put_huffman(0xC0 + symbol - 280, 8)


def back_reference(length: int, distance: int) -> bytes:
    """`length` bytes copied from `distance` bytes back, as one non-final fixed-Huffman block
    followed by an empty stored block to end on a byte boundary: 9 or 10 bytes for a length of
    3-258 and a distance up to 32 KiB, where a stored block would cost the length plus 5."""
    if not MIN_MATCH <= length <= MAX_MATCH or not 1 <= distance <= MAX_DISTANCE:
        raise ValueError(f"no single match of {length} bytes at {distance}")
    bits = _Bits()
    bits.put(0, 1)  # BFINAL: more blocks follow
    bits.put(1, 2)  # BTYPE 01: fixed Huffman codes
    code, extra, value = _code(LENGTHS, length)
    _fixed_literal_length(bits, 257 + code)
    bits.put(value, extra)
    code, extra, value = _code(DISTANCES, distance)
    bits.put_huffman(code, 5)
    bits.put(value, extra)
    _fixed_literal_length(bits, 256)  # end of block
    bits.put(0, 3)  # BFINAL 0, BTYPE 00: an empty stored block, from the next byte boundary
    return bits.to_bytes() + b"\x00\x00\xff\xff"
