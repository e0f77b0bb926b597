"""Reading the CLI's ``--context-file`` (a path, or ``-`` for stdin) into one ``str``.

A file is decoded straight from a read-only memory map, so the only copy in the process's own
memory is the ``str`` itself (the mapped pages are the page cache's, dropped when the map
closes). Text must be UTF-8 without NUL bytes unless ``decode_errors="replace"`` is asked
for: a binary file would otherwise become a context of replacement characters. Empty input is
an error: a run over zero characters is almost always a mistake (a wrong path, a pipe that
produced nothing).
"""

from __future__ import annotations

import mmap
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal

__all__ = ["BIG_FILE_BYTES", "ContextFileError", "read_context"]

DecodeErrors = Literal["strict", "replace"]

#: Files from this size on get a status line while they are read.
BIG_FILE_BYTES = 64 * 1024 * 1024


class ContextFileError(ValueError):
    """The context input cannot be used; the message names it and says what to do."""


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _decode(data: bytes | mmap.mmap, name: str, errors: DecodeErrors) -> str:
    if errors == "strict":
        nul = data.find(b"\x00")
        if nul >= 0:
            raise ContextFileError(
                f"{name} looks binary (NUL byte at offset {nul}); pass a text file, or "
                "--decode-errors replace to read it anyway"
            )
    try:
        return str(data, "utf-8", errors)
    except UnicodeDecodeError as exc:
        raise ContextFileError(
            f"{name} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "convert it (iconv -t UTF-8) or pass --decode-errors replace"
        ) from None


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
    p = Path(path)
    if not p.exists():
        raise ContextFileError(f"context file not found: {path}")
    if not p.is_file():
        raise ContextFileError(f"context file is not a regular file: {path}")
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
