"""The host's event loop for one code block: frames, output, callbacks, timeout, interrupt."""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .callbacks import CallbackRun
from .channel import RECV_CHUNK, WorkerHandle
from .child.frames import BadFrame
from .output import CappedOutput
from .protocol import check_message

# How the block ended: the worker reported "done"; it died or broke the protocol ("died"); it
# ignored the interrupt ("unresponsive"); the caller cancelled it ("aborted").
Ending = Literal["done", "died", "unresponsive", "aborted"]

_DRAIN_SECONDS = 0.05


@dataclass
class BlockOutcome:
    """What the loop saw; the sandbox decides about restarts and wording."""

    ending: Ending
    error: str | None = None
    final_answer: str | None = None
    timed_out: bool = False
    escaped: BaseException | None = None
    reason: str = ""


class BlockLoop:
    """Runs one block on ``worker`` until it reports, dies, or has to be given up."""

    def __init__(
        self,
        worker: WorkerHandle,
        calls: CallbackRun,
        out: CappedOutput,
        *,
        wake_fd: int,
        interrupt: Callable[[], None],
        abort: threading.Event,
        exec_timeout: float,
        interrupt_grace: float,
    ) -> None:
        self.worker = worker
        self.calls = calls
        self.out = out
        self.wake_fd = wake_fd
        self.interrupt = interrupt
        self.abort = abort
        self.exec_timeout = exec_timeout
        self.interrupt_grace = interrupt_grace
        self.started = 0.0
        self.interrupted_at: float | None = None
        self.outcome = BlockOutcome("done")

    def run(self, code: str) -> BlockOutcome:
        """Send ``code`` and serve the worker until the block is over."""
        self.started = time.monotonic()
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.worker.sock, selectors.EVENT_READ, "sock")
            sel.register(self.worker.out_fd, selectors.EVENT_READ, "out")
            sel.register(self.wake_fd, selectors.EVENT_READ, "wake")
            if not self.worker.send({"op": "exec", "code": code}):
                return self._end("died", "the worker process was gone before the block started")
            while True:
                ending = self._tick(sel)
                if ending is not None:
                    return ending
        finally:
            sel.close()
            _drain_output(self.worker.out_fd, self.out)

    def _tick(self, sel: selectors.BaseSelector) -> BlockOutcome | None:
        now = time.monotonic()
        if self.abort.is_set():
            return self._end("aborted", "the block was cancelled")
        if self.calls.escaped is not None and self.outcome.escaped is None:
            # A handler raised graph control flow: stop the block, keeping variables if we can.
            self.outcome.escaped = self.calls.escaped
            self._start_interrupt(now)
        if self.interrupted_at is None:
            busy = self.calls.busy()
            active = now - self.started - self.calls.waited(now)
            if active >= self.exec_timeout and not busy:
                self.outcome.timed_out = True
                self._start_interrupt(now)
                return None
            wait = 0.1 if busy else self.exec_timeout - active
        else:
            left = self.interrupt_grace - (now - self.interrupted_at)
            if left <= 0:
                return self._end("unresponsive", "the block did not stop when interrupted")
            wait = left
        for key, _ in sel.select(max(0.0, wait)):
            if key.data == "wake":
                _drain_fd(self.wake_fd)
            elif key.data == "out":
                if not _read_output(self.worker.out_fd, self.out):
                    sel.unregister(self.worker.out_fd)
            else:
                ending = self._receive()
                if ending is not None:
                    return ending
        return None

    def _receive(self) -> BlockOutcome | None:
        try:
            data = self.worker.sock.recv(RECV_CHUNK)
        except OSError:
            data = b""
        if not data:
            return self._end("died", "the worker process ended unexpectedly")
        try:
            messages = [
                (check_message(msg), size) for msg, size in self.worker.reader.feed_sized(data)
            ]
        except BadFrame as exc:
            # The worker's code wrote on the protocol fd itself: nothing it says can be trusted.
            return self._end("died", f"protocol error: {exc}")
        for msg, size in messages:
            op = msg["op"]
            if op == "call":
                self.calls.dispatch(msg, self.worker, size=size)
            elif op == "done":
                self.outcome.error = msg.get("error")
                self.outcome.final_answer = msg.get("final_answer")
                return self._end("done", "")
        return None

    def _start_interrupt(self, now: float) -> None:
        if self.interrupted_at is None:
            self.interrupted_at = now
            self.interrupt()

    def _end(self, ending: Ending, reason: str) -> BlockOutcome:
        self.outcome.ending = ending
        self.outcome.reason = reason
        return self.outcome


def _drain_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass


def _read_output(fd: int, out: CappedOutput) -> bool:
    """Read what is available; ``False`` at end of file."""
    try:
        data = os.read(fd, RECV_CHUNK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    if not data:
        return False
    out.feed(data)
    return True


def _drain_output(fd: int, out: CappedOutput) -> None:
    # Everything the block wrote before "done" is already in the pipe; a background process that
    # keeps writing must not hold us here, hence the time bound.
    deadline = time.monotonic() + _DRAIN_SECONDS
    while time.monotonic() < deadline:
        if not _read_output(fd, out):
            return
        with contextlib.suppress(OSError):
            if not _readable(fd):
                return


def _readable(fd: int) -> bool:
    import select

    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)
