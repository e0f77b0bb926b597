"""Process-local live objects of RLM runs: sandbox, budget link, sub-call handlers.

Nothing here goes into graph state (a sandbox cannot be checkpointed). A run's objects are
found by its ``run_id`` (kept in state); the tree's :class:`~rlm_graph.budget.Budget` by the
root run's id (``config["configurable"]["rlm_root"]`` in descendants).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import patch_config

from rlm_graph import _exit
from rlm_graph import budget as budgets
from rlm_graph.budget import Budget, BudgetExhausted
from rlm_graph.context import Context
from rlm_graph.events import RunInfo, preview
from rlm_graph.prompts import subcall_prompt
from rlm_graph.state import Usage, add_usage, empty_usage

if TYPE_CHECKING:
    from rlm_graph.sandbox import Sandbox

Writer = Callable[[Any], None]


def usage_of(message: BaseMessage) -> Usage:
    """Usage of one model call from ``AIMessage.usage_metadata`` (zeros when not reported)."""
    meta = getattr(message, "usage_metadata", None) or {}
    inp = int(meta.get("input_tokens") or 0)
    out = int(meta.get("output_tokens") or 0)
    total = int(meta.get("total_tokens") or (inp + out))
    return Usage(input_tokens=inp, output_tokens=out, total_tokens=total, llm_calls=1)


def message_text(message: BaseMessage) -> str:
    """Plain text of a model reply (content blocks joined)."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = [
        c if isinstance(c, str) else str(c.get("text", ""))
        for c in content
        if isinstance(c, str) or c.get("type") == "text"
    ]
    return "".join(parts)


@contextlib.contextmanager
def _slot(budget: Budget) -> Iterator[None]:
    """Hold one reserved call slot; give it back if the call fails (nothing was spent)."""
    budget.reserve()
    try:
        yield
    except BaseException:
        budget.release()
        raise


def _recorded(budget: Budget, reply: BaseMessage) -> tuple[BaseMessage, Usage]:
    usage = usage_of(reply)
    budget.record(usage)
    return reply, usage


def call_model(budget: Budget, model: BaseChatModel, messages: Any) -> tuple[BaseMessage, Usage]:
    """One budgeted model call: reserve a slot, call, record usage (release the slot on error).

    Raises :class:`BudgetExhausted` before calling when the tree's budget is spent.
    """
    with _slot(budget):
        reply = model.invoke(messages)
    return _recorded(budget, reply)


async def acall_model(
    budget: Budget, model: BaseChatModel, messages: Any
) -> tuple[BaseMessage, Usage]:
    """:func:`call_model` for async runs (cancellation releases the slot)."""
    with _slot(budget):
        reply = await model.ainvoke(messages)
    return _recorded(budget, reply)


@dataclasses.dataclass
class Run:
    """Live objects of one run (root or child)."""

    info: RunInfo
    budget_id: str
    budget: Budget
    ctx: Context
    is_root: bool
    sandbox: Sandbox | None = None
    # Set by each execute step so handlers use the current node's config and stream writer.
    config: RunnableConfig | None = None
    writer: Writer | None = None
    iteration: int = 0
    step_started: float = 0.0
    started: float = dataclasses.field(default_factory=time.monotonic)
    _pending: Usage = dataclasses.field(default_factory=empty_usage)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add_usage(self, usage: Usage) -> None:
        """Account sub-call usage, collected by the next :meth:`take_usage`."""
        with self._lock:
            self._pending = add_usage(self._pending, usage)

    def take_usage(self) -> Usage:
        """Usage added since the last call."""
        with self._lock:
            pending, self._pending = self._pending, empty_usage()
            return pending

    def emit(self, event: Any, **fields: Any) -> None:
        """Emit a custom stream event for this run at its current iteration."""
        self.info.emit(self.writer, event, self.iteration, **fields)

    def close_sandbox(self) -> None:
        """Close this run's sandbox (idempotent)."""
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            sandbox.close()


_RUNS: dict[str, Run] = {}
_RUNS_LOCK = threading.Lock()


def new_id() -> str:
    """A fresh run / call id."""
    return uuid.uuid4().hex[:12]


def open_run(run_id: str, config: RunnableConfig, ctx: Context) -> Run:
    """Register the live objects of a run, creating the tree's budget at the root."""
    conf = config.get("configurable") or {}
    root_id = conf.get("rlm_root")
    budget = budgets.lookup(root_id) if root_id else None
    is_root = budget is None
    if budget is None:
        root_id = run_id
        budget = Budget(
            max_llm_calls=ctx.max_llm_calls,
            max_total_tokens=ctx.max_total_tokens,
            max_seconds=ctx.max_seconds,
        )
        budgets.register(run_id, budget)
    assert root_id is not None
    info = RunInfo(
        run_id=run_id,
        parent_run_id=conf.get("rlm_parent_run") if not is_root else None,
        depth=int(conf.get("rlm_depth", 0)) if not is_root else 0,
        clock=budget.elapsed,
    )
    run = Run(info=info, budget_id=root_id, budget=budget, ctx=ctx, is_root=is_root)
    with _RUNS_LOCK:
        _RUNS[run_id] = run
    return run


def get_run(run_id: str, config: RunnableConfig, ctx: Context) -> Run:
    """The live objects of a run; re-opened if this process has none.

    A run resumed from a checkpoint in another process (or after a restart) gets a fresh budget
    and, at its next code block, a fresh sandbox: REPL variables do not survive the move.
    """
    with _RUNS_LOCK:
        run = _RUNS.get(run_id)
    return run if run is not None else open_run(run_id, config, ctx)


def close_run(run_id: str) -> None:
    """Close a run's sandbox and forget it; at the root, also every leftover run of the tree."""
    with _RUNS_LOCK:
        run = _RUNS.pop(run_id, None)
        leftovers: list[Run] = []
        if run is not None and run.is_root:
            leftovers = [r for r in _RUNS.values() if r.budget_id == run.budget_id]
            for r in leftovers:
                _RUNS.pop(r.info.run_id, None)
    for r in ([run] if run else []) + leftovers:
        try:
            r.close_sandbox()
        except Exception:  # closing is best effort; never mask the run's own outcome
            pass
    if run is not None and run.is_root:
        budgets.unregister(run.budget_id)


@atexit.register
def close_all() -> None:
    """Safety net: close every sandbox still open in this process."""
    with _RUNS_LOCK:
        runs = list(_RUNS.values())
        _RUNS.clear()
    for r in runs:
        try:
            r.close_sandbox()
        except Exception:
            pass


# On Ctrl-C in the CLI: a node blocked in a sandbox block fails at once instead of holding the
# exit until the block ends or times out.
_exit.on_abandon(close_all)


class Handlers:
    """The host functions a run's sandbox calls: ``llm_query`` and ``rlm_query``."""

    def __init__(
        self,
        run: Run,
        sub_model: Callable[[], BaseChatModel],
        invoke_child: Callable[[dict[str, Any], RunnableConfig, dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.run = run
        self.sub_model = sub_model
        self.invoke_child = invoke_child

    def as_dict(self) -> dict[str, Callable[..., Any]]:
        """Mapping for ``Sandbox(handlers=...)``."""
        return {"llm_query": self.llm_query, "rlm_query": self.rlm_query}

    def llm_query(self, prompt: str) -> str:
        """A plain sub-model call, budgeted and counted in this run's usage."""
        return self._plain(str(prompt), function="llm_query")

    def rlm_query(self, query: str, context: Any = None) -> str:
        """Run the same graph on a sub-task one level deeper (plain call past max_depth)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("rlm_query needs a non-empty query string")
        run = self.run
        depth = run.info.depth + 1
        if depth > run.ctx.max_depth:
            return self._plain(subcall_prompt(query, context), function="rlm_query")
        reason = run.budget.exhausted()
        if reason:
            return f"Error: budget exhausted: {reason}"
        child_id = new_id()
        parent = run.config or {}
        child_config = patch_config(
            parent,
            recursion_limit=max(parent.get("recursion_limit", 25), 4 * run.ctx.max_iterations + 8),
            configurable={
                **(parent.get("configurable") or {}),
                "rlm_depth": depth,
                "rlm_root": run.budget_id,
                "rlm_parent_run": run.info.run_id,
                "rlm_run_id": child_id,
            },
        )
        child_input: dict[str, Any] = {"query": query}
        if context is not None:
            child_input["context"] = context
        with self._subcall("rlm", "rlm_query", query, child_id) as outcome:
            out = self.invoke_child(child_input, child_config, dataclasses.asdict(run.ctx))
            run.add_usage(out["usage"])
            outcome["answer"] = str(out["answer"])
        return str(outcome["answer"])

    def _plain(self, prompt: str, *, function: Literal["llm_query", "rlm_query"]) -> str:
        with self._subcall("llm", function, prompt) as outcome:
            try:
                reply, usage = call_model(self.run.budget, self.sub_model(), prompt)
            except BudgetExhausted as exc:
                outcome.update(answer=f"Error: {exc}", error=str(exc))
            else:
                self.run.add_usage(usage)
                outcome["answer"] = message_text(reply)
        return str(outcome["answer"])

    @contextlib.contextmanager
    def _subcall(
        self,
        kind: Literal["llm", "rlm"],
        function: Literal["llm_query", "rlm_query"],
        prompt: str,
        child_run_id: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Emit subcall_start and subcall_end around a sub-call; the body sets its outcome.

        ``kind`` is what ran (a plain model call or a child run), ``function`` what the code
        called: ``rlm_query`` past ``max_depth`` is ``kind="llm"``.
        """
        run, call_id = self.run, new_id()
        run.emit(
            "subcall_start", call_id=call_id, kind=kind, function=function, prompt=preview(prompt)
        )
        start = time.monotonic()
        outcome: dict[str, Any] = {"answer": "", "error": None}
        try:
            yield outcome
        except BaseException as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            run.emit(
                "subcall_end",
                call_id=call_id,
                kind=kind,
                function=function,
                seconds=round(time.monotonic() - start, 4),
                answer=preview(outcome["answer"]),
                error=outcome["error"],
                child_run_id=child_run_id,
            )
