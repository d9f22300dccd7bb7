"""The deflate blocks made by hand (ws/deflate_blocks.py), read back by zlib's own inflater."""

from __future__ import annotations

import random
import zlib

import pytest

from switchboard.ws.deflate_blocks import (
    MAX_DISTANCE,
    MAX_MATCH,
    MIN_MATCH,
    TAIL,
    back_reference,
    stored_block,
)


@pytest.mark.parametrize("length", range(MIN_MATCH, MAX_MATCH + 1))
def test_a_back_reference_copies_its_bytes_from_the_history(length: int) -> None:
    rng = random.Random(length)
    distances = {
        length,
        length + 1,
        257,
        2048,
        4097,
        MAX_DISTANCE - 1,
        MAX_DISTANCE,
        rng.randint(length, MAX_DISTANCE),
    }
    for distance in sorted(distances):
        history = rng.randbytes(distance)
        inflater = zlib.decompressobj(-15, zdict=history)
        # What follows the block in the same message still reads: it ends on a byte boundary.
        copied = (history * (length // distance + 1))[:length]  # a match may overlap what it writes
        assert inflater.decompress(back_reference(length, distance) + stored_block(b"after") + TAIL) == (
            copied + b"after"
        ), distance
        assert len(back_reference(length, distance)) <= 10


def test_a_back_reference_may_overlap_what_it_writes() -> None:
    inflater = zlib.decompressobj(-15, zdict=b"ab")
    assert inflater.decompress(back_reference(7, 2) + TAIL) == b"abababa"


@pytest.mark.parametrize(("length", "distance"), [(2, 10), (259, 300), (10, 0), (10, MAX_DISTANCE + 1)])
def test_what_one_match_cannot_say_is_refused(length: int, distance: int) -> None:
    with pytest.raises(ValueError, match="no single match"):
        back_reference(length, distance)
