"""Host-side end of one worker: its protocol socket, its output pipe and its pid."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
from typing import Any

from . import protocol
from .child import frames
from .child.frames import FrameTooLarge

RECV_CHUNK = 1 << 20


class FrameReader:
    """Splits a byte stream into frames, refusing any frame above ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add received bytes; return the complete messages now available."""
        return [msg for msg, _size in self.feed_sized(data)]

    def feed_sized(self, data: bytes) -> list[tuple[Any, int]]:
        """Like :meth:`feed`, with each message's estimated decoded size in bytes.

        Raises :class:`~rlm_graph.sandbox.child.frames.BadFrame` (``FrameTooLarge`` for an
        oversize one) for a frame the host refuses to decode (see :mod:`.protocol`).
        """
        self._buf += data
        out: list[tuple[Any, int]] = []
        size = frames.HEADER.size
        while len(self._buf) >= size:
            (length,) = frames.HEADER.unpack_from(self._buf)
            if length > self.max_bytes:
                raise FrameTooLarge(
                    f"the worker sent a frame of {length:,} bytes, over the limit of "
                    f"{self.max_bytes:,} bytes"
                )
            if len(self._buf) < size + length:
                break
            body = bytes(self._buf[size : size + length])
            del self._buf[: size + length]
            out.append(protocol.decode_sized(body))
        return out


class WorkerHandle:
    """One forked worker as the host sees it."""

    def __init__(
        self, pid: int, sock: socket.socket, out_fd: int, max_frame_bytes: int, *, host_pid: bool
    ) -> None:
        self.pid = pid
        # A pidfd pins the process: signals through it can never hit a process that reused the
        # pid. Only possible when ``pid`` is in our pid namespace (process mode).
        self.pidfd: int | None = None
        if host_pid:
            with contextlib.suppress(OSError, AttributeError):
                self.pidfd = os.pidfd_open(pid)
        self.sock = sock
        self.out_fd = out_fd
        self.reader = FrameReader(max_frame_bytes)
        self.send_lock = threading.Lock()
        self.closed = False

    def send(self, message: Any) -> bool:
        """Send one frame; ``False`` if the worker is gone (callers treat that as its death)."""
        data = frames.encode(message)
        with self.send_lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
            except OSError:
                return False
        return True

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the worker itself; ``False`` if it cannot be done from the host."""
        if self.pidfd is None:
            return False
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self.pidfd, sig)
        return True

    def kill_group(self) -> None:
        """SIGKILL the worker's process group, but only while the worker itself still exists
        (so its pid, which is the group id, cannot have been reused)."""
        if self.pidfd is None:
            return
        with contextlib.suppress(OSError):
            if not select.select([self.pidfd], [], [], 0)[0]:
                os.killpg(self.pid, signal.SIGKILL)

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
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
