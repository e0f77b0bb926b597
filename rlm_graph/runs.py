"""The live objects of RLM runs, owned by one compiled graph: executor (sandbox), budget, usage.

Nothing here goes into graph state (a sandbox cannot be checkpointed). Each compiled graph has
one :class:`RunTable`; a run is found in it by the ``run_id`` kept in state. A child run takes
its tree's :class:`~rlm_graph.budget.Budget` from its parent run, named in its config
(``configurable["rlm_parent_run"]``), so two graphs in one process never share runs or budgets.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
import uuid
import weakref
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer

from rlm_graph.budget import Budget
from rlm_graph.context import Context
from rlm_graph.events import EventName, RunInfo
from rlm_graph.state import Usage, add_usage, empty_usage

#: The iteration a node is working on, for events emitted from sandbox handler threads (the
#: sandbox copies the calling thread's contextvars into them).
current_iteration: contextvars.ContextVar[int] = contextvars.ContextVar("rlm_iteration", default=0)

#: Whether the node calling the sandbox runs under ``ainvoke`` (async tools are then awaited).
in_async_run: contextvars.ContextVar[bool] = contextvars.ContextVar("rlm_async", default=False)


def new_id() -> str:
    """A fresh run / call id."""
    return uuid.uuid4().hex[:12]


@dataclasses.dataclass
class Run:
    """Live objects of one run (root or child)."""

    info: RunInfo
    root_id: str
    budget: Budget
    ctx: Context
    executor: Any = None
    #: The executor's sub-call handlers (a :class:`rlm_graph.journal.RecordingHandlers`).
    handlers: Any = None
    #: Closes the executor of a paused run after its TTL (see :mod:`rlm_graph.idle`).
    idle_timer: Any = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    #: The host handlers' binding (:class:`rlm_graph.followups.HandlerBinding`), the thread
    #: whose sandbox this root run keeps, and setup code to run before its first block.
    binding: Any = None
    thread_id: str | None = None
    setup: str | None = None
    #: Semaphores shared by the whole recursion tree (per-tool concurrency caps), by key.
    slots: dict[str, threading.BoundedSemaphore] = dataclasses.field(default_factory=dict)
    _pending: Usage = dataclasses.field(default_factory=empty_usage)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def is_root(self) -> bool:
        """Whether this run is its tree's root (it owns the budget)."""
        return self.root_id == self.info.run_id

    def add_usage(self, usage: Usage) -> None:
        """Account sub-call usage, collected by the next :meth:`take_usage`."""
        with self._lock:
            self._pending = add_usage(self._pending, usage)

    def take_usage(self) -> Usage:
        """Usage added since the last call."""
        with self._lock:
            pending, self._pending = self._pending, empty_usage()
            return pending

    def tree_slots(self, key: str, size: int) -> threading.BoundedSemaphore:
        """The tree-wide semaphore named ``key`` (made with ``size`` slots on first use)."""
        with self._lock:
            return self.slots.setdefault(key, threading.BoundedSemaphore(size))

    def emit(self, event: EventName, iteration: int | None = None, **fields: Any) -> None:
        """Emit a custom stream event for this run (at the current iteration by default)."""
        it = current_iteration.get() if iteration is None else iteration
        self.info.emit(get_stream_writer(), event, it, **fields)

    def close_executor(self) -> None:
        """Close this run's executor (idempotent)."""
        executor, self.executor = self.executor, None
        if executor is not None:
            executor.close()


def _close_quietly(runs: list[Run]) -> None:
    for r in runs:
        try:
            r.close_executor()
        except Exception:  # closing is best effort; never mask the run's own outcome
            pass


class RunTable:
    """The live runs of one compiled graph, by run id (thread-safe)."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        # At interpreter exit, or when the graph is dropped, no sandbox is left behind.
        weakref.finalize(self, _close_all, self._runs, self._lock)

    def open(self, run_id: str, config: RunnableConfig, ctx: Context) -> Run:
        """Register a run: a child (its parent named in ``config``) shares its parent's budget;
        a root, or a child whose parent this process does not hold, gets a new one."""
        conf = config.get("configurable") or {}
        with self._lock:
            parent = self._runs.get(conf.get("rlm_parent_run") or "")
        slots: dict[str, threading.BoundedSemaphore] = {}
        if parent is not None:
            budget, root_id, clock = parent.budget, parent.root_id, parent.info.clock
            slots = parent.slots
        else:
            budget = Budget(
                max_llm_calls=ctx.max_llm_calls,
                max_total_tokens=ctx.max_total_tokens,
                max_seconds=ctx.max_seconds,
            )
            root_id, clock = run_id, budget.elapsed
        info = RunInfo(
            run_id=run_id,
            parent_run_id=parent.info.run_id if parent else None,
            depth=int(conf.get("rlm_depth", 0)) if parent else 0,
            clock=clock,
        )
        run = Run(info=info, root_id=root_id, budget=budget, ctx=ctx, slots=slots)
        with self._lock:
            self._runs[run_id] = run
        return run

    def find(self, run_id: str) -> Run | None:
        """The live objects of a run, if this process holds them."""
        with self._lock:
            return self._runs.get(run_id)

    def close(self, run_id: str) -> None:
        """Close a run's executor and forget it; at the root, also every leftover of its tree."""
        with self._lock:
            run = self._runs.pop(run_id, None)
            closing = [run] if run is not None else []
            if run is not None and run.is_root:
                leftovers = [r for r in self._runs.values() if r.root_id == run.root_id]
                for r in leftovers:
                    del self._runs[r.info.run_id]
                closing += leftovers
        _close_quietly(closing)

    def close_all(self) -> None:
        """Close every run still open (a safety net; also used on Ctrl-C by the CLI)."""
        _close_all(self._runs, self._lock)

    def ids(self) -> list[str]:
        """Ids of the runs open now."""
        with self._lock:
            return list(self._runs)


def _close_all(runs: dict[str, Run], lock: threading.Lock) -> None:
    with lock:
        closing = list(runs.values())
        runs.clear()
    _close_quietly(closing)
