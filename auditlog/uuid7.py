"""Time-ordered UUIDs (RFC 9562 version 7): new rows land at the end of the uuid index."""

import os
import time
import uuid


def uuid7(unix_ms: int | None = None, rand: int | None = None) -> uuid.UUID:
    """Return a UUIDv7: 48 bits of Unix milliseconds, then version, variant and 74 random bits.

    `unix_ms` and `rand` (80 bits) are for generated data; by default: now, and os.urandom.
    """
    if unix_ms is None:
        unix_ms = time.time_ns() // 1_000_000
    if rand is None:
        rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # 62 random bits (rand_b)
    return uuid.UUID(int=value)
