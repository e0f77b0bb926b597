"""Length-prefixed JSON frames, shared by the host and the worker (stdlib only).

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Pickle is never
used: the worker runs untrusted code, and unpickling its bytes would be code execution in the host.
"""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_LENGTH = 0xFFFFFFFF


class BadFrame(ValueError):
    """A frame the receiver refuses: malformed, too large, or not a message it accepts."""


class FrameTooLarge(BadFrame):
    """A frame is larger than the receiver accepts."""


def encode(message: Any) -> bytes:
    """Serialize ``message`` as one frame (header included).

    Strings with lone surrogates (``"\ud800"``, which model code can make) cannot be UTF-8:
    such a message is sent with JSON escapes instead, and the host replaces them.
    """
    try:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        body = json.dumps(message, separators=(",", ":")).encode("ascii")
    if len(body) > MAX_LENGTH:
        raise FrameTooLarge(f"frame of {len(body)} bytes cannot be encoded")
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes | bytearray | memoryview) -> Any:
    """Parse the JSON body of one frame."""
    return json.loads(bytes(body).decode("utf-8"))


def read_frame(sock: Any, max_bytes: int) -> Any:
    """Read one frame from a blocking socket; ``None`` at end of stream."""
    header = _read_exact(sock, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > max_bytes:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {max_bytes} bytes")
    body = _read_exact(sock, length)
    if body is None:
        return None
    return decode_body(body)


def _read_exact(sock: Any, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return buf
