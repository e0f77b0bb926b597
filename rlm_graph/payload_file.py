"""A ``context_file`` put in the run's store without ever being held whole in the host.

Two passes over the file, each one slice at a time (:func:`rlm_graph.context_file.text_slices`,
about 1 MB): :func:`scan_file` decodes it for its content hash, its description
(:class:`~rlm_graph.describe.PayloadInfo`: length, lines, preview) and the CPython kind of the
whole text; :func:`write_file`, called only when the store does not hold that hash yet, decodes
it again and writes the slices as the payload's parts (:func:`rlm_graph.payload_parts.write_texts`).
The hash is the one :func:`rlm_graph.payload_store.content_hash` gives the decoded text, so the
same text given by value and by file is one stored payload.

A file that changes while it is read fails the input with :class:`FileChanged`: its size,
mtime or inode moved during a pass or between the passes, or the second pass's text hashes
differently from the first's. The parts the second pass wrote are then deleted and no head is
written: the store never holds parts that do not match their hash.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from langgraph.store.base import BaseStore

from rlm_graph.context_file import ContextFileError, DecodeErrors, open_context, text_slices
from rlm_graph.describe import PayloadInfo, TextMeter
from rlm_graph.inputs import InputError
from rlm_graph.payload_parts import make_head, write_texts
from rlm_graph.sandbox.payload import canonical_kind, str_kind

#: CPython's ``str`` kinds, narrowest first: a text's kind is its widest slice's.
_KINDS = ("ascii", "latin1", "ucs2", "ucs4")


class FileChanged(InputError):
    """The context file changed while the run was reading it."""


class TextDigest:
    """The content hash of a text fed slice by slice: sha256 of ``b"s"`` and its UTF-8."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256(b"s")

    def update(self, piece: str) -> None:
        """Add the next slice of the text."""
        self._sha.update(piece.encode("utf-8", "surrogatepass"))

    def hexdigest(self) -> str:
        """``sha256:<hex>`` of the text so far."""
        return "sha256:" + self._sha.hexdigest()


@dataclass(frozen=True)
class FileScan:
    """What the first pass learned: the text's hash, description and kind, and the file's
    (size, mtime, inode) when it was read."""

    path: str
    errors: DecodeErrors
    digest: str
    info: PayloadInfo
    kind: str
    stamp: tuple[int, int, int]


def scan_file(path: str, errors: DecodeErrors) -> FileScan:
    """The first pass: hash, describe and measure the file's text, one slice at a time.
    Raises :class:`~rlm_graph.context_file.ContextFileError` for an empty, missing or (strict
    mode) undecodable file, :class:`FileChanged` if it changed meanwhile."""
    digest, meter, widest = TextDigest(), TextMeter(), 0
    with open_context(path) as f:
        before = _stamp(f)
        if before[0] == 0:
            raise ContextFileError(f"context file is empty: {path}")
        for piece in text_slices(f, f"context file {path}", errors):
            digest.update(piece)
            meter.add(piece)
            widest = max(widest, _KINDS.index(_kind(piece)))
        _unchanged(path, before, _stamp(f))
    return FileScan(path, errors, digest.hexdigest(), meter.info(), _KINDS[widest], before)


def write_file(store: BaseStore, scan: FileScan) -> dict:
    """The second pass: write the file's text as the parts of ``scan.digest``, checking it is
    still the text the first pass hashed; returns the head to store last."""
    with open_context(scan.path) as f:
        _unchanged(scan.path, scan.stamp, _stamp(f))

        def texts() -> Iterator[str]:
            again = TextDigest()
            for piece in text_slices(f, f"context file {scan.path}", scan.errors):
                again.update(piece)
                yield piece
            # Before the last batch of parts is written: a mismatch deletes what was written.
            _unchanged(scan.path, scan.stamp, _stamp(f))
            if again.hexdigest() != scan.digest:
                raise FileChanged(_changed(scan.path))

        written = write_texts(store, scan.digest, texts())
    chars = scan.info.chars
    return make_head("str", scan.kind, chars, chars, written, scan.info)


def _kind(piece: str) -> str:
    """The CPython kind of a slice just decoded: read from its size (a decoded ``str`` is
    always stored in its narrowest kind), computed from its characters only when unsure (that
    takes a pass over every character: about 50 ms per slice)."""
    kind = str_kind(piece)
    return kind if kind in _KINDS else canonical_kind(piece)


def _stamp(f: BinaryIO) -> tuple[int, int, int]:
    st = os.fstat(f.fileno())
    return st.st_size, st.st_mtime_ns, st.st_ino


def _unchanged(path: str, before: tuple[int, int, int], after: tuple[int, int, int]) -> None:
    if before != after:
        raise FileChanged(_changed(path))


def _changed(path: str) -> str:
    return (
        f"context file {path} changed while it was being read (nothing was stored); run again "
        "once it is written"
    )
