"""Host-side end of one worker: its protocol socket, its output pipe and its pid."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

from . import _frames
from ._frames import FrameTooLarge

RECV_CHUNK = 1 << 20


class FrameReader:
    """Splits a byte stream into frames, refusing any frame above ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add received bytes; return the complete messages now available."""
        self._buf += data
        out: list[Any] = []
        size = _frames.HEADER.size
        while len(self._buf) >= size:
            (length,) = _frames.HEADER.unpack_from(self._buf)
            if length > self.max_bytes:
                raise FrameTooLarge(
                    f"the worker sent a frame of {length:,} bytes, over the limit of "
                    f"{self.max_bytes:,} bytes"
                )
            if len(self._buf) < size + length:
                break
            body = bytes(self._buf[size : size + length])
            del self._buf[: size + length]
            try:
                out.append(_frames.decode_body(body))
            except ValueError as exc:
                raise FrameTooLarge(f"the worker sent a malformed frame ({exc})") from None
        return out


class WorkerHandle:
    """One forked worker as the host sees it."""

    def __init__(self, pid: int, sock: socket.socket, out_fd: int, max_frame_bytes: int) -> None:
        self.pid = pid
        self.sock = sock
        self.out_fd = out_fd
        self.reader = FrameReader(max_frame_bytes)
        self.send_lock = threading.Lock()
        self.closed = False

    def send(self, message: Any) -> bool:
        """Send one frame; ``False`` if the worker is gone (callers treat that as its death)."""
        data = _frames.encode(message)
        with self.send_lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
            except OSError:
                return False
        return True

    def close(self) -> None:
        """Close the host's ends of the socket and pipe."""
        if self.closed:
            return
        # Unblock a handler thread stuck in sendall before taking the lock it holds.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with self.send_lock:
            if self.closed:
                return
            self.closed = True
        self.sock.close()
        with contextlib.suppress(OSError):
            os.close(self.out_fd)
