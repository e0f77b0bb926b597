"""Capture of a worker's fds 1 and 2: keeps the head and tail, counts the true length."""

from __future__ import annotations

# UTF-8 continuation bytes: counting the bytes that are *not* one gives the number of characters.
_CONTINUATION = bytes(range(0x80, 0xC0))


class CappedOutput:
    """Accumulates bytes, keeping only the first and last ``max_chars // 2`` characters' worth."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max(0, max_chars)
        # 4 bytes per character at most, plus a few bytes to finish a split character.
        self._keep = self.max_chars * 4 + 4
        self._head = bytearray()
        self._tail = bytearray()
        self.total_bytes = 0
        self.total_chars = 0

    def feed(self, data: bytes) -> None:
        """Add a chunk of raw output."""
        self.total_bytes += len(data)
        self.total_chars += len(data.translate(None, _CONTINUATION))
        room = self._keep - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            if len(self._tail) > 2 * self._keep:
                del self._tail[: len(self._tail) - self._keep]

    def text(self) -> str:
        """The captured output, cut to ``max_chars`` with a note stating the true length."""
        if self.total_chars <= self.max_chars:
            return (bytes(self._head) + bytes(self._tail)).decode("utf-8", "replace")
        half = self.max_chars // 2
        head = bytes(self._head).decode("utf-8", "replace")[:half]
        tail = (bytes(self._head) + bytes(self._tail))[-self._keep :].decode("utf-8", "replace")
        tail = tail[len(tail) - (self.max_chars - half) :] if self.max_chars - half else ""
        omitted = self.total_chars - len(head) - len(tail)
        return (
            f"{head}\n... [{omitted:,} characters omitted; the output was "
            f"{self.total_chars:,} characters in total] ...\n{tail}"
        )
