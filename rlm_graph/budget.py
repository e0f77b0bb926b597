"""Shared limits and usage accounting for a whole recursion tree.

One :class:`Budget` serves the root run and every descendant: the root run creates it and each
child run takes its parent's (see :mod:`rlm_graph.runs`). All methods are thread-safe: sandbox
sub-calls arrive from many host threads at once.

Call accounting: a call *reserves* a slot with :meth:`Budget.reserve` before it starts, so
``max_llm_calls`` can never be exceeded however many calls are in flight. A call that fails
before the provider answered gives its slot back with :meth:`Budget.release` (nothing was
spent); a call that answered is recorded with :meth:`Budget.record`. ``max_total_tokens`` is
checked at reservation time: once the recorded total reaches it no new call starts, so the
overshoot is bounded by the calls already in flight. ``max_seconds`` is one deadline for the tree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rlm_graph.state import Usage, add_usage, empty_usage


class BudgetExhausted(RuntimeError):
    """A limit of the recursion tree has been reached; the message says which."""


class Budget:
    """Thread-safe call / token / time limits and usage totals for a recursion tree."""

    def __init__(
        self,
        *,
        max_llm_calls: int | None = None,
        max_total_tokens: int | None = None,
        max_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_llm_calls = max_llm_calls
        self.max_total_tokens = max_total_tokens
        self.max_seconds = max_seconds
        self._clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._reserved = 0
        self._usage = empty_usage()

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the deadline is measured on."""
        return self._clock

    def deadline(self) -> float | None:
        """The tree's ``max_seconds`` deadline on :attr:`clock`, or None."""
        return None if self.max_seconds is None else self.started + self.max_seconds

    def elapsed(self) -> float:
        """Seconds since the tree started."""
        return self._clock() - self.started

    def _reason_locked(self) -> str | None:
        if self.max_seconds is not None and self.elapsed() >= self.max_seconds:
            return f"max_seconds={self.max_seconds:g} reached"
        if self.max_total_tokens is not None and self._usage["total_tokens"] >= (
            self.max_total_tokens
        ):
            return f"max_total_tokens={self.max_total_tokens} reached"
        if self.max_llm_calls is not None and self._reserved >= self.max_llm_calls:
            return f"max_llm_calls={self.max_llm_calls} reached"
        return None

    def exhausted(self) -> str | None:
        """Why no new call may start, or None while calls are still allowed."""
        with self._lock:
            return self._reason_locked()

    def reserve(self) -> None:
        """Take one call slot or raise :class:`BudgetExhausted`."""
        with self._lock:
            reason = self._reason_locked()
            if reason:
                raise BudgetExhausted(f"budget exhausted: {reason}")
            self._reserved += 1

    def release(self) -> None:
        """Give back a slot whose call failed without an answer."""
        with self._lock:
            self._reserved -= 1

    def record(self, usage: Usage) -> None:
        """Account for a reserved call that answered (``usage["llm_calls"]`` is ignored)."""
        with self._lock:
            self._usage = add_usage(self._usage, {**usage, "llm_calls": 1})

    @property
    def usage(self) -> Usage:
        """Totals recorded so far for the whole tree."""
        with self._lock:
            return Usage(**self._usage)

    def remaining(self) -> dict[str, float | int | None]:
        """What is left of each limit (None = unlimited), for the prompt."""
        with self._lock:
            return {
                "llm_calls": None
                if self.max_llm_calls is None
                else max(0, self.max_llm_calls - self._reserved),
                "total_tokens": None
                if self.max_total_tokens is None
                else max(0, self.max_total_tokens - self._usage["total_tokens"]),
                "seconds": None
                if self.max_seconds is None
                else max(0.0, round(self.max_seconds - self.elapsed(), 1)),
            }

    def snapshot(self) -> dict[str, Any]:
        """The spend so far, serializable (kept in state so a resumed tree continues it)."""
        with self._lock:
            return {
                "reserved": self._reserved,
                "usage": dict(self._usage),
                "seconds": self.elapsed(),
            }

    def restore(self, spent: Mapping[str, Any]) -> None:
        """Continue from a :meth:`snapshot`: its calls, tokens and elapsed time count as spent."""
        with self._lock:
            self._reserved = max(self._reserved, int(spent.get("reserved", 0)))
            usage = spent.get("usage") or {}
            self._usage = Usage(**{k: int(usage.get(k, 0)) for k in self._usage})  # type: ignore[typeddict-item]
            self.started = self._clock() - float(spent.get("seconds", 0.0))
