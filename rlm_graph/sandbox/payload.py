"""Stream the run's payload to the zygote over a socket, in the layout its ``str`` will have.

A ``str`` is sent as CPython stores it (1, 2 or 4 bytes per character, known from its size), so
the zygote can create an empty ``str`` of the right kind and receive the bytes straight into it:
no decoding, no file, no second copy on either side. Measured faster than a file + ``mmap``
decode here because fresh pages are expensive on this kind of VM and the file costs a second set.
JSON-like values are streamed as JSON text.

A :class:`PayloadStream` is a payload read piece by piece from where it is stored (the graph's
store), so the host never holds the whole of it: each piece is encoded and sent, then dropped.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from typing import Any

from .child import frames
from .child.tables import STR_KINDS
from .errors import PayloadError
from .payload_check import ACCEPTED, first_unsupported

SLICE_CHARS = 4 << 20
_ASCII_HEADER = sys.getsizeof("") - 1
_COMPACT_HEADER = sys.getsizeof("\xe9") - 2


class PayloadStream:
    """A payload the sandbox reads in pieces each time it starts a zygote, instead of a value.

    Subclasses give ``kind``: the canonical CPython kind of the whole ``str`` (``ascii``,
    ``latin1``, ``ucs2`` or ``ucs4``, as :func:`canonical_kind` computes it), or ``json`` for
    any other JSON-like value; ``chars``: the ``str``'s length (0 for ``json``); and
    :meth:`pieces`, the text in order (the characters, or the JSON text). A stream whose pieces
    do not add up to ``chars``, or hold a character its kind cannot store, fails the start with
    :class:`PayloadError` rather than loading something else.
    """

    kind: str = "json"
    chars: int = 0

    def pieces(self) -> Iterator[str]:
        """The payload's text, piece by piece; read afresh on every call."""
        raise NotImplementedError


def canonical_kind(text: str) -> str:
    """The kind CPython gives a ``str`` with exactly these characters (by its largest one)."""
    if text.isascii():
        return "ascii"
    top = ord(max(text))
    return "latin1" if top < 0x100 else "ucs2" if top < 0x10000 else "ucs4"


def check_payload(value: Any) -> None:
    """Refuse a payload the zygote cannot load, naming the first unsupported type in it."""
    if isinstance(value, PayloadStream):
        if value.kind != "json" and value.kind not in STR_KINDS:
            raise PayloadError(f"unknown payload stream kind {value.kind!r}")
        return
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
    if isinstance(value, PayloadStream):
        _send_stream(value, sock)
        return
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


def _send_stream(stream: PayloadStream, sock: socket.socket) -> None:
    """Send a stream's pieces one at a time: the host holds one encoded piece, never the whole."""
    if stream.kind == "json":
        sock.sendall(frames.encode({"kind": "json"}))
        for piece in stream.pieces():
            sock.sendall(piece.encode("utf-8", "surrogatepass"))
        return
    width, _max_char, codec = STR_KINDS[stream.kind]
    total = int(stream.chars)
    sock.sendall(frames.encode({"kind": stream.kind, "chars": total, "nbytes": total * width}))
    sent = 0
    for piece in stream.pieces():
        if sent + len(piece) > total:
            raise PayloadError(f"the stored payload is longer than its {total} characters")
        try:
            data = piece.encode(codec, "surrogatepass")
        except UnicodeEncodeError:
            data = b""
        if len(data) != len(piece) * width:  # utf-16 would pair a character above U+FFFF
            raise PayloadError(
                f"the stored payload holds a character its kind {stream.kind!r} cannot store"
            )
        sock.sendall(data)
        sent += len(piece)
    if sent != total:
        raise PayloadError(f"the stored payload has {sent} of its {total} characters")


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
