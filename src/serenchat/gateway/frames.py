"""Building WebSocket frames without a connection (RFC 6455, section 5.2).

A server's frames are never masked, so the bytes of one text frame are the
same for every recipient: fan-out builds them once and writes them to each
transport as they are.
"""

from __future__ import annotations

import struct

OP_TEXT = 0x1
OP_CLOSE = 0x8


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A complete, final, unmasked frame carrying ``payload``."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        header = struct.pack("!BB", first, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload
