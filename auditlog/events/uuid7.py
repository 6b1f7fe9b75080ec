"""Time-ordered UUIDs (RFC 9562 version 7): new rows land at the end of the uuid index."""

import os
import threading
import time
import uuid

# os.urandom is a system call that also releases the GIL (a thread switch under load): draw
# randomness in 4 KiB blocks instead, from the same source. A forked child starts empty, so
# two processes never hand out the same bytes.
_BLOCK = 4096
_pool = bytearray()
_pool_lock = threading.Lock()


def _forget_after_fork() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()  # another thread may have held it at the fork
    _pool.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _random_80_bits() -> int:
    with _pool_lock:
        if len(_pool) < 10:
            _pool[:] = os.urandom(_BLOCK)
        bits = int.from_bytes(_pool[-10:], "big")
        del _pool[-10:]
    return bits


def uuid7(unix_ms: int | None = None, rand: int | None = None) -> uuid.UUID:
    """Return a UUIDv7: 48 bits of Unix milliseconds, then version, variant and 74 random bits.

    `unix_ms` and `rand` (80 bits) are for generated data; by default: now, and os.urandom's.
    """
    if unix_ms is None:
        unix_ms = time.time_ns() // 1_000_000
    if rand is None:
        rand = _random_80_bits()
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # 62 random bits (rand_b)
    return uuid.UUID(int=value)
