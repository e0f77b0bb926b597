"""Reading a context file (the CLI's ``--context-file``, the graph's ``context_file``): whole
into one ``str``, or slice by slice without ever holding it.

:func:`read_context` decodes a file straight from a read-only memory map, so the only copy in
the process's own memory is the ``str`` itself (the mapped pages are the page cache's, dropped
when the map closes). :func:`text_slices` decodes it in slices of :data:`SLICE_BYTES` (cut
between characters), and :func:`check_context` runs the checks through it: the CLI checks a
file without holding it, then passes the path. Both decode the same way: UTF-8, bytes as they
are (no newline translation: ``\r\n`` stays, as from stdin or a ``str`` given by value), bad
bytes replaced by U+FFFD with ``decode_errors="replace"``, so either reader gives the same text.

Text must be UTF-8 without NUL bytes unless ``decode_errors="replace"`` is asked for: a binary
file would otherwise become a context of replacement characters. Empty input is an error: a
run over zero characters is almost always a mistake (a wrong path, a pipe that produced
nothing).
"""

from __future__ import annotations

import mmap
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal

__all__ = [
    "BIG_FILE_BYTES",
    "SLICE_BYTES",
    "ContextFileError",
    "check_context",
    "open_context",
    "read_context",
    "text_slices",
]

DecodeErrors = Literal["strict", "replace"]

#: Files from this size on get a status line while they are read.
BIG_FILE_BYTES = 64 * 1024 * 1024
#: Bytes read per slice by :func:`text_slices` (a slice decodes to at most this many characters).
SLICE_BYTES = 1 << 20


class ContextFileError(ValueError):
    """The context input cannot be used; the message names it and says what to do."""


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class _NotUtf8(ContextFileError):
    """Bad UTF-8 (a NUL byte later in the file is reported instead, as a whole read does)."""


def _binary(name: str, offset: int) -> ContextFileError:
    return ContextFileError(
        f"{name} looks binary (NUL byte at offset {offset}); pass a text file, or "
        "--decode-errors replace to read it anyway"
    )


def _decode(
    data: bytes | mmap.mmap,
    name: str,
    errors: DecodeErrors,
    offset: int = 0,
    end: int | None = None,
) -> str:
    """``data[:end]`` as text, without copying the bytes; ``offset``: where ``data`` starts in
    the file (for the messages)."""
    end = len(data) if end is None else end
    if errors == "strict":
        nul = data.find(b"\x00", 0, end)
        if nul >= 0:
            raise _binary(name, offset + nul)
    try:
        # A view of bytes, never of a memory map (a view left on it would keep it open).
        return str(data if end == len(data) else memoryview(data)[:end], "utf-8", errors)
    except UnicodeDecodeError as exc:
        raise _NotUtf8(
            f"{name} is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
            f"{offset + exc.start}); convert it (iconv -t UTF-8) or pass --decode-errors replace"
        ) from None


def _nul_after(f: BinaryIO, rest: bytes, offset: int) -> int | None:
    """The offset of the first NUL byte in ``rest`` (at ``offset`` in the file) and what
    follows it in ``f``, or None."""
    while True:
        nul = rest.find(b"\x00")
        if nul >= 0:
            return offset + nul
        offset, rest = offset + len(rest), f.read(SLICE_BYTES)
        if not rest:
            return None


def _cut(data: bytes) -> int:
    """Where to end a slice of ``data`` so that no character is split: decoding the slices one
    by one then gives exactly the text (and the U+FFFD) of decoding the whole at once.

    Only a lead byte (0xC0 and up) starts a sequence that can run past the cut, by at most 3
    bytes; any other byte either stands alone or ends one. So the cut goes before the last lead
    byte among the last 3, else at the end.
    """
    for i in range(len(data) - 1, max(len(data) - 4, -1), -1):
        if data[i] >= 0xC0:
            return i
        if data[i] < 0x80:  # ASCII: complete, and nothing before it runs past it
            return len(data)
    return len(data)


def text_slices(
    f: BinaryIO, name: str, errors: DecodeErrors, size: int | None = None
) -> Iterator[str]:
    """The text of the binary file ``f`` from its current position, decoded one slice of about
    ``size`` bytes (default :data:`SLICE_BYTES`) at a time, never all of it at once; the same
    characters as :func:`read_context`. Raises :class:`ContextFileError` (strict mode: a NUL
    byte or bad UTF-8, with its offset in the file) when the slice holding it is read."""
    size = size or SLICE_BYTES
    offset, pending, last = 0, b"", False
    while not last:
        data = f.read(size)
        last = not data  # the last slice takes what is left
        chunk = pending + data if pending else data
        del data
        cut = len(chunk) if last else _cut(chunk)
        try:
            piece = _decode(chunk, name, errors, offset, cut) if cut else ""
        except _NotUtf8:  # a whole read looks for NUL bytes first: say the same
            nul = _nul_after(f, chunk[cut:], offset + cut)
            if nul is not None:
                raise _binary(name, nul) from None
            raise
        offset, pending = offset + cut, chunk[cut:]
        del chunk  # only the text is held while the caller has it
        if piece:
            yield piece


def _read_stdin(stream: BinaryIO, errors: DecodeErrors, say: Callable[[str], None]) -> str:
    if sys.stdin.isatty():
        say("Reading the context from the terminal: type or paste it, then press Ctrl-D.")
    text = _decode(stream.read(), "stdin", errors)
    if not text:
        raise ContextFileError(
            "--context-file -: stdin is empty; pipe the input in (cat FILE | rlm-graph ...) "
            "or pass --context-file FILE"
        )
    return text


def read_context(
    path: str,
    *,
    decode_errors: DecodeErrors = "strict",
    say: Callable[[str], None] = lambda _: None,
    stdin: BinaryIO | None = None,
) -> str:
    """The text of ``path`` (``"-"``: stdin); ``say`` gets status lines for big files and the
    terminal hint. Raises :class:`ContextFileError` with a one-line message."""
    if path == "-":
        return _read_stdin(stdin or sys.stdin.buffer, decode_errors, say)
    p = _regular(path)
    try:
        with p.open("rb") as f:
            size = p.stat().st_size
            if size == 0:
                raise ContextFileError(f"context file is empty: {path}")
            started = time.monotonic()
            if size >= BIG_FILE_BYTES:
                say(f"Reading {path} ({_size(size)})...")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                text = _decode(mm, f"context file {path}", decode_errors)
            if size >= BIG_FILE_BYTES:
                say(f"Read {len(text):,} characters in {time.monotonic() - started:.1f} s.")
            return text
    except OSError as exc:
        raise ContextFileError(f"cannot read context file {path}: {exc.strerror or exc}") from exc


def _regular(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise ContextFileError(f"context file not found: {path}")
    if not p.is_file():
        raise ContextFileError(f"context file is not a regular file: {path}")
    return p


def open_context(path: str) -> BinaryIO:
    """``path`` opened for reading in binary; :class:`ContextFileError` if it is missing, not a
    regular file or cannot be opened."""
    p = _regular(path)
    try:
        return p.open("rb")
    except OSError as exc:
        raise ContextFileError(f"cannot read context file {path}: {exc.strerror or exc}") from exc


def check_context(
    path: str,
    *,
    decode_errors: DecodeErrors = "strict",
    say: Callable[[str], None] = lambda _: None,
) -> int:
    """Check that the file ``path`` is a usable context, as :func:`read_context` would, without
    holding it: one slice at a time (strict mode decodes it all; ``replace`` cannot fail past
    the emptiness check). Returns its size in bytes; raises :class:`ContextFileError` with the
    same one-line messages as :func:`read_context`."""
    try:
        with open_context(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ContextFileError(f"context file is empty: {path}")
            if decode_errors == "replace":
                return size
            started = time.monotonic()
            if size >= BIG_FILE_BYTES:
                say(f"Checking {path} ({_size(size)})...")
            for _ in text_slices(f, f"context file {path}", decode_errors):
                pass
            if size >= BIG_FILE_BYTES:
                say(f"Checked it in {time.monotonic() - started:.1f} s.")
            return size
    except OSError as exc:
        raise ContextFileError(f"cannot read context file {path}: {exc.strerror or exc}") from exc
