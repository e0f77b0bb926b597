"""The outcome of one executed code block."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExecResult:
    """What one call of :meth:`Sandbox.run` produced.

    ``restarted`` means the worker was killed or died and a fresh one was started: every variable
    the model defined is lost (``context`` and ``query`` are still there).
    """

    output: str
    output_chars: int
    error: str | None
    final_answer: str | None
    timed_out: bool
    restarted: bool
    seconds: float
    callback_seconds: float
