"""Paused runs give their sandbox back: after ``sandbox_ttl`` seconds of waiting (for an
approval, or any interrupt), the run's executor is closed. The run's budget stays in the graph's
run table; the next resume finds no executor and rebuilds the REPL by replay
(:mod:`rlm_graph.journal`)."""

from __future__ import annotations

import threading

from rlm_graph.runs import Run


def park(run: Run, ttl: float | None) -> None:
    """The run is paused: close its executor in ``ttl`` seconds unless it resumes first."""
    unpark(run)
    if ttl is None or run.executor is None:
        return
    timer = threading.Timer(ttl, _expire, args=(run, run.executor))
    timer.daemon = True
    run.idle_timer = timer
    timer.start()


def unpark(run: Run) -> None:
    """The run is working again: keep its executor."""
    timer, run.idle_timer = run.idle_timer, None
    if timer is not None:
        timer.cancel()


def _expire(run: Run, executor: object) -> None:
    # Only the executor that was parked, and only if the run has not resumed since.
    if run.executor is executor and run.idle_timer is not None:
        run.idle_timer = None
        run.close_executor()
