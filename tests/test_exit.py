"""Ctrl-C handling of the CLI: in-flight work is stopped first, then KeyboardInterrupt."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from rlm_graph import _exit


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A fresh hook registry and Python's default SIGINT handler (restored afterwards)."""
    monkeypatch.setattr(_exit, "_hooks", [])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield []
    signal.signal(signal.SIGINT, previous)


def test_sigint_runs_the_hooks_then_raises(hooks: list[str]) -> None:
    done = threading.Event()

    def stop() -> None:
        hooks.append("stopped")
        done.set()

    _exit.on_abandon(stop)
    _exit.on_abandon(stop)  # registered once
    with pytest.raises(KeyboardInterrupt), _exit.interrupt_stops_work():
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(5)  # interrupted long before this ends
    assert done.is_set()  # stopped by the time the interrupt left the block
    assert done.wait(5)
    assert hooks == ["stopped"]  # once: the block waited for the handler's thread
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_keyboard_interrupt_without_sigint_also_stops_the_work(hooks: list[str]) -> None:
    _exit.on_abandon(lambda: hooks.append("stopped"))
    with pytest.raises(KeyboardInterrupt), _exit.interrupt_stops_work():
        raise KeyboardInterrupt
    assert hooks == ["stopped"]


def test_a_failing_hook_does_not_stop_the_others(hooks: list[str]) -> None:
    def broken() -> None:
        raise RuntimeError("cannot stop")

    _exit.on_abandon(lambda: hooks.append("first"))
    _exit.on_abandon(broken)
    _exit.abandon()
    assert hooks == ["first"]


def test_ignored_sigint_stays_ignored(hooks: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with _exit.interrupt_stops_work():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_not_installed_outside_the_main_thread(hooks: list[str]) -> None:
    seen: list[object] = []

    def body() -> None:
        with _exit.interrupt_stops_work():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]
