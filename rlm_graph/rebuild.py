"""The run's executor for a block: the live one, or a fresh one rebuilt to where the run was.

A fresh executor gets the payload from the store (off the event loop), the REPL helpers
(``prelude``), then, when the run has a journal (a resume in a new process, or after the
sandbox's TTL), the replay of every block run so far (:mod:`rlm_graph.journal`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

from langgraph.errors import GraphBubbleUp

from rlm_graph.executor import Executor, ExecutorFactory, ExecutorSpec
from rlm_graph.followups import HandlerBinding
from rlm_graph.host_functions import HostFunctions
from rlm_graph.journal import RecordingHandlers, replay
from rlm_graph.payload_store import Offload, Payloads
from rlm_graph.runs import Run
from rlm_graph.state import State
from rlm_graph.steps import RunBlock
from rlm_graph.updates import output_chars


def executor_for(
    run: Run,
    state: State,
    *,
    payloads: Payloads,
    handlers: Callable[[Run], Mapping[str, Callable[..., Any]]],
    factory: ExecutorFactory,
    prelude: str,
    tools: Any = (),
) -> Generator[Any, Any, tuple[Executor, str | None]]:
    """The executor and the note for the next observation (which replayed blocks diverged).
    ``handlers(run)`` makes the host functions of a run; every call through them is recorded
    in ``run.handlers`` (a follow-up re-binds them to its own run). Its block time is capped by
    the tree's deadline (at least 1 s, so the block can report)."""
    note = state.get("replay_note")
    if run.executor is None:
        ref = state.get("payload")
        payload = (yield Offload(lambda: payloads.get(ref))) if ref else None
        run.binding = HandlerBinding(lambda r: _recorded(r, handlers(r)), run)
        spec = ExecutorSpec(
            payload=payload,
            query=state["query"],
            handlers=run.binding.handlers(),
            mode=run.ctx.sandbox,
            exec_timeout=run.ctx.exec_timeout,
            max_output_chars=output_chars(run.ctx),
            max_concurrency=run.ctx.max_concurrency,
            passthrough_exceptions=(GraphBubbleUp,),
            tools=tools,
        )
        run.executor = executor = factory(spec)
        # grep() and chunks() before the model's first block
        yield RunBlock(executor, prelude, traced=False)
        if state.get("journal"):  # no live REPL: rebuild it from the record
            note = yield from replay(executor, run.handlers, state["journal"])
    left = run.budget.remaining()["seconds"]
    if left is not None:
        run.executor.exec_timeout = min(run.ctx.exec_timeout, max(1.0, float(left)))
    return run.executor, note


def _recorded(run: Run, live: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """``live`` with every call recorded for the journal, in ``run.handlers``."""
    run.handlers = RecordingHandlers(live)
    return run.handlers.as_dict()


def host_handlers(run: Run, graph: Any, models: Any, payloads: Payloads, extras: Any) -> Any:
    """The host functions serving ``run``'s code: ``llm_query``/``rlm_query`` (children by
    reference through ``payloads``) and the tools (re-made for a follow-up's run)."""
    host = HostFunctions(run, graph, lambda: models.sub(run.ctx), put_payload=payloads.put)
    return {**host.as_dict(), **extras.tool_handlers(run)}
