"""Stream the run's payload to the zygote over a socket, in the layout its ``str`` will have.

A ``str`` is sent as CPython stores it (1, 2 or 4 bytes per character, known from its size), so
the zygote can create an empty ``str`` of the right kind and receive the bytes straight into it:
no decoding, no file, no second copy on either side. Measured faster than a file + ``mmap``
decode here because fresh pages are expensive on this kind of VM and the file costs a second set.
JSON-like values are streamed as JSON text.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

from .child import frames
from .child.tables import STR_KINDS
from .errors import PayloadError
from .payload_check import ACCEPTED, first_unsupported

SLICE_CHARS = 4 << 20
_ASCII_HEADER = sys.getsizeof("") - 1
_COMPACT_HEADER = sys.getsizeof("\xe9") - 2


def check_payload(value: Any) -> None:
    """Refuse a payload the zygote cannot load, naming the first unsupported type in it."""
    bad = first_unsupported(value)
    if bad is not None:
        raise PayloadError(f"unsupported payload type {bad!r}; accepted types: {ACCEPTED}")


def str_kind(text: str) -> str:
    """How CPython stores ``text``: ascii, latin1, ucs2 or ucs4; ``utf8`` when unsure."""
    if type(text) is not str:
        return "utf8"
    if text.isascii():
        return "ascii" if sys.getsizeof(text) == _ASCII_HEADER + len(text) + 1 else "utf8"
    width, rest = divmod(sys.getsizeof(text) - _COMPACT_HEADER, len(text) + 1)
    return {1: "latin1", 2: "ucs2", 4: "ucs4"}.get(width, "utf8") if rest == 0 else "utf8"


def send_payload(value: Any, sock: socket.socket) -> None:
    """Send a header frame, then the payload's bytes; the caller closes ``sock`` afterwards.

    Raises :class:`PayloadError` for values that are not JSON-like (the zygote then sees a
    truncated stream and fails; the caller discards it).
    """
    check_payload(value)
    if isinstance(value, str):
        kind = str_kind(value)
        if kind in STR_KINDS:
            width, _max_char, codec = STR_KINDS[kind]
            header = {"kind": kind, "chars": len(value), "nbytes": len(value) * width}
            sock.sendall(frames.encode(header))
            view = _storage(value, kind)
            if view is not None:
                for start in range(0, len(view), SLICE_CHARS):
                    sock.sendall(view[start : start + SLICE_CHARS])
                return
            for start in range(0, len(value), SLICE_CHARS):
                piece = value[start : start + SLICE_CHARS]
                sock.sendall(piece.encode(codec, "surrogatepass"))
            return
        sock.sendall(frames.encode({"kind": "utf8"}))
        for start in range(0, len(value), SLICE_CHARS):
            sock.sendall(value[start : start + SLICE_CHARS].encode("utf-8", "replace"))
        return
    sock.sendall(frames.encode({"kind": "json"}))
    encoder = json.JSONEncoder(ensure_ascii=False, default=_reject)
    batch: list[str] = []
    size = 0
    try:
        for chunk in encoder.iterencode(value):
            batch.append(chunk)
            size += len(chunk)
            if size >= 1 << 20:
                sock.sendall("".join(batch).encode("utf-8", "surrogatepass"))
                batch, size = [], 0
    except ValueError as exc:
        raise PayloadError(
            f"payload cannot be sent as JSON ({exc}); accepted: {ACCEPTED}"
        ) from None
    sock.sendall("".join(batch).encode("utf-8", "surrogatepass"))


def _storage(text: str, kind: str) -> memoryview | None:
    """A read-only view of ``text``'s own character storage, or ``None`` if unsure of the layout.

    Sending from it saves two copies of the payload (slice + encode) on the host. The layout is
    derived from ``sys.getsizeof`` and checked against the text's first and last characters.
    """
    width, _max_char, codec = STR_KINDS[kind]
    header = _ASCII_HEADER if kind == "ascii" else _COMPACT_HEADER
    try:
        import ctypes

        raw = (ctypes.c_char * (len(text) * width)).from_address(id(text) + header)
        view = memoryview(raw).cast("B").toreadonly()
    except Exception:
        return None
    probe = min(len(text), 64)
    head = text[:probe].encode(codec, "surrogatepass")
    tail = text[-probe:].encode(codec, "surrogatepass")
    if bytes(view[: len(head)]) != head or bytes(view[len(view) - len(tail) :]) != tail:
        return None
    return view


def _reject(value: Any) -> Any:
    raise PayloadError(_refusal(value))


def _refusal(value: Any) -> str:
    return f"unsupported payload type {type(value).__name__!r}; accepted types: {ACCEPTED}"
