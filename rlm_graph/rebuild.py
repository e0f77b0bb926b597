"""The run's executor for a block: the live one, or a fresh one rebuilt to where the run was.

A fresh executor gets the payload from the store (off the event loop), the REPL helpers
(``prelude``), then, when the run has a journal (a resume in a new process, or after the
sandbox's TTL), the replay of every block run so far (:mod:`rlm_graph.journal`). A follow-up
on a thread (:mod:`rlm_graph.followups`) with no parked sandbox replays the thread's earlier
questions first, from the thread's record, so their variables are there again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

from langgraph.errors import GraphBubbleUp

from rlm_graph.events import preview
from rlm_graph.executor import Executor, ExecutorFactory, ExecutorSpec, streams_payload
from rlm_graph.followups import HandlerBinding, setup_code
from rlm_graph.host_functions import HostFunctions
from rlm_graph.journal import RecordingHandlers, divergence_note, replay, replay_blocks
from rlm_graph.payload_store import Offload, Payloads
from rlm_graph.runs import Run
from rlm_graph.state import PayloadRef, State, ThreadQuestion
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
        questions = thread_questions(state)
        ref = questions[0]["payload"] if questions else state.get("payload")
        # A stored payload is streamed into the sandbox part by part, not read whole here.
        load = payloads.source if streams_payload(factory) else payloads.get
        payload = (yield Offload(lambda: load(ref))) if ref else None
        run.binding = HandlerBinding(lambda r: _recorded(r, handlers(r)), run)
        spec = ExecutorSpec(
            payload=payload,
            query=questions[0]["query"] if questions else state["query"],
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
        if questions:  # a thread's question: its earlier questions first, then this run's blocks
            note = yield from replay_thread(executor, run.handlers, questions, payloads)
            run.setup = None  # this question's setup ran in the replay
        elif state.get("journal"):  # no live REPL: rebuild it from the record
            note = yield from replay(executor, run.handlers, state["journal"])
    deadline = run.budget.deadline()
    if deadline is not None:
        # Unrounded (remaining() rounds to 0.1 s for the prompt): a block cut a few ms before
        # the deadline let the run think once more instead of stopping on its budget.
        left = deadline - run.budget.clock()
        run.executor.exec_timeout = min(run.ctx.exec_timeout, max(1.0, left))
    return run.executor, note


def thread_questions(state: State) -> list[ThreadQuestion] | None:
    """The questions whose code rebuilds this follow-up thread's REPL, oldest first: the
    thread's record, then the current question with the blocks this run has run so far.
    None for a run with no thread (its own journal alone rebuilds it)."""
    current = state.get("thread_question")
    if not current:
        return None
    record = state.get("thread_record")
    earlier = list(record["questions"]) if record else []
    now = ThreadQuestion(
        query=current["query"],
        payload=current["payload"],
        number=current["number"],
        journal=list(state.get("journal") or []),
    )
    return [*earlier, now]


def replay_thread(
    executor: Executor,
    handlers: RecordingHandlers,
    questions: list[ThreadQuestion],
    payloads: Payloads,
) -> Generator[Any, Any, str | None]:
    """Replay a thread into a fresh executor made with its first question's payload and query:
    each later question's setup (its ``query``, its context as ``context_<n>`` and
    ``context``, loaded from the store) and every question's blocks, sub-calls answered from
    the record. The note naming the blocks that diverged, or None."""
    diverged: list[str] = []
    last = len(questions) - 1
    for i, question in enumerate(questions):
        if i > 0:
            ref, value = question["payload"], None
            if ref and question["number"] is not None:
                value = yield _load(payloads, ref)
            number = question["number"] if value is not None else None
            yield RunBlock(executor, setup_code(question["query"], value, number), traced=False)
        where = "" if i == last else f"the earlier question {preview(question['query'], 60)!r}, "
        diverged += yield from replay_blocks(executor, handlers, question["journal"], where)
    return divergence_note(diverged, thread=last > 0)


def _load(payloads: Payloads, ref: PayloadRef) -> Offload:
    return Offload(lambda: payloads.get(ref))


def _recorded(run: Run, live: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """``live`` with every call recorded for the journal, in ``run.handlers``."""
    run.handlers = RecordingHandlers(live)
    return run.handlers.as_dict()


def host_handlers(run: Run, graph: Any, models: Any, payloads: Payloads, extras: Any) -> Any:
    """The host functions serving ``run``'s code: ``llm_query``/``rlm_query`` (children by
    reference through ``payloads``) and the tools (re-made for a follow-up's run)."""
    host = HostFunctions(run, graph, lambda: models.sub(run.ctx), put_payload=payloads.put)
    return {**host.as_dict(), **extras.tool_handlers(run)}
