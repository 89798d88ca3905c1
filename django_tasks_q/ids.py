"""Task ids: UUIDv7, so they sort by creation time and reveal nothing sequential.

Python 3.14 has ``uuid.uuid7``; until 3.14 is the minimum, this is the RFC 9562
layout with the sub-millisecond bits filled from the clock ("method 3"), kept
strictly increasing within a process so enqueue order is claim order.
"""

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0


def uuid7() -> uuid.UUID:
    global _last
    nanoseconds = time.time_ns()
    milliseconds, remainder = divmod(nanoseconds, 1_000_000)
    # 12 bits of sub-millisecond precision: a step of about 244 ns.
    timestamp = (milliseconds << 12) | (remainder * 4096 // 1_000_000)
    with _lock:
        timestamp = max(timestamp, _last + 1)
        _last = timestamp
    random_bits = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    value = (
        (timestamp >> 12) << 80  # unix_ts_ms: 48 bits
        | 0x7 << 76  # version
        | (timestamp & 0xFFF) << 64  # rand_a: the sub-millisecond fraction
        | 0b10 << 62  # variant
        | random_bits  # rand_b
    )
    return uuid.UUID(int=value)
