"""Ctrl-C that takes effect at once: stop what running graph nodes are blocked on.

On an exception LangGraph's synchronous ``stream``/``invoke`` waits for its running nodes to
finish before it lets the exception out, and a node blocked in a local-model call or a sandbox
block does not notice a Ctrl-C in the main thread: the process would sit for as long as the call
takes (a minute and more for the local model on a CPU) and only then stop the server at exit.
The CLI therefore runs under :func:`interrupt_stops_work`, which on SIGINT first stops every
local server and sandbox (the hooks registered with :func:`on_abandon`), so the blocked calls
fail at once, and then raises ``KeyboardInterrupt`` as usual.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

_hooks: list[Callable[[], None]] = []
_lock = threading.Lock()


def on_abandon(func: Callable[[], None]) -> None:
    """Call ``func`` (best effort) when the program is abandoned."""
    with _lock:
        if func not in _hooks:
            _hooks.append(func)


def abandon() -> None:
    """Run every hook now: stop the local servers and sandboxes that threads may wait on."""
    with _lock:
        hooks = list(_hooks)
    for func in reversed(hooks):
        try:
            func()
        except Exception:  # best effort: the program is going away
            pass


@contextlib.contextmanager
def interrupt_stops_work() -> Iterator[None]:
    """While active in the main thread, SIGINT stops in-flight work, then raises
    ``KeyboardInterrupt``; when a ``KeyboardInterrupt`` leaves the block, the work has stopped.
    The handler is not installed where SIGINT is not Python's default handler (ignored in a
    background job, or already handled by the caller)."""
    stopping: list[threading.Thread] = []

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        # In a thread: the main thread may hold the very locks that stopping takes (a server
        # that is starting, the run registry), and the handler runs in the main thread.
        if not stopping:
            stopping.append(threading.Thread(target=abandon, name="rlm-graph-abandon", daemon=True))
            stopping[0].start()
        raise KeyboardInterrupt

    install = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    previous = signal.signal(signal.SIGINT, on_sigint) if install else None
    try:
        yield
    except KeyboardInterrupt:
        # Finished before the interrupt goes on, not just started by the handler.
        if stopping:
            stopping[0].join()
        else:
            abandon()
        raise
    finally:
        if install:
            signal.signal(signal.SIGINT, previous)
