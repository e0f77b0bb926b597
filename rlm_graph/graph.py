"""The RLM loop as a LangGraph state machine, and :func:`build_graph`.

    START → start → think ─┬─ code ───────→ execute → observe ─┬─→ think
                           ├─ no code, no answer ───→ observe  └─→ finish → END
                           └─ answer / budget ──────────────────→ finish

``rlm_query`` inside the sandbox invokes this same compiled graph with a fresh input and the
node's config (depth + 1 in ``configurable``), so children nest in streaming, tracing and
checkpoints. Live objects (sandbox, budget) stay out of state: see :mod:`rlm_graph.runs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph._internal._runnable import RunnableCallable
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from rlm_graph import prompts
from rlm_graph.budget import BudgetExhausted
from rlm_graph.context import (
    Context,
    PromptStyle,
    SandboxMode,
    context_class_with_defaults,
    resolve_context,
    validate_context,
)
from rlm_graph.events import THOUGHT_CHARS, preview
from rlm_graph.parsing import drop_final_answer, parse_reply
from rlm_graph.prompts import validate_input
from rlm_graph.runs import (
    Handlers,
    Run,
    acall_model,
    call_model,
    close_run,
    get_run,
    message_text,
    new_id,
)
from rlm_graph.runs import open_run as _open_run
from rlm_graph.state import (
    BlockResult,
    InputState,
    OutputState,
    State,
    Usage,
    add_usage,
    empty_usage,
)


def _guarded(func: Callable[..., Any], afunc: Callable[..., Awaitable[Any]] | None = None) -> Any:
    """The node as a runnable that closes the run's live objects when it fails, then re-raises.

    Cancellation (``asyncio.CancelledError``) counts as failure. Graph control flow
    (``GraphBubbleUp``: interrupts) passes through with the sandbox kept, so a resumed run finds
    its REPL variables; the root's cleanup or the exit handler closes it otherwise.
    """

    def cleanup(state: State) -> None:
        if isinstance(state, dict) and state.get("run_id"):
            close_run(state["run_id"])

    @functools.wraps(func)
    def wrapper(state: State, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(state, *args, **kwargs)
        except GraphBubbleUp:
            raise
        except BaseException:
            cleanup(state)
            raise

    awrapper = None
    if afunc is not None:

        @functools.wraps(afunc)
        async def awrapper(state: State, *args: Any, **kwargs: Any) -> Any:
            try:
                return await afunc(state, *args, **kwargs)
            except GraphBubbleUp:
                raise
            except BaseException:
                cleanup(state)
                raise

    return RunnableCallable(wrapper, awrapper, name=func.__name__, trace=False)


class _Models:
    """Resolves model specs once each; instances given to build_graph win when the spec is None."""

    def __init__(self, model: BaseChatModel | None, sub_model: BaseChatModel | None) -> None:
        self.model, self.sub_model = model, sub_model
        self._cache: dict[tuple[str | None, str], BaseChatModel] = {}
        self._lock = threading.Lock()

    def _resolve(self, spec: str | None, role: Literal["root", "sub"]) -> BaseChatModel:
        with self._lock:
            if (spec, role) not in self._cache:
                from rlm_graph.models import resolve_model  # lazy: provider SDKs are heavy

                self._cache[(spec, role)] = resolve_model(spec, role=role)
            return self._cache[(spec, role)]

    def root(self, ctx: Context) -> BaseChatModel:
        if ctx.model:
            return self._resolve(ctx.model, "root")
        return self.model or self._resolve(None, "root")  # None: models.default_model_spec()

    def sub(self, ctx: Context) -> BaseChatModel:
        if ctx.sub_model:
            return self._resolve(ctx.sub_model, "sub")
        return self.sub_model or self.root(ctx)


def build_graph(
    model: str | BaseChatModel | None = None,
    sub_model: str | BaseChatModel | None = None,
    *,
    max_depth: int = 2,
    max_iterations: int = 20,
    exec_timeout: float = 60.0,
    max_output_chars: int | None = None,
    prompt_style: PromptStyle = "auto",
    sandbox: SandboxMode = "process",
    max_concurrency: int = 8,
    max_llm_calls: int | None = None,
    max_total_tokens: int | None = None,
    max_seconds: float | None = None,
    checkpointer: BaseCheckpointSaver | bool | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Build the compiled RLM graph (named ``"rlm"``).

    ``model`` / ``sub_model`` are ``"provider/model"`` specs, LangChain chat models, or None
    (default: :func:`rlm_graph.models.default_model_spec`; ``sub_model`` defaults to
    ``model``). The other arguments are the defaults of the graph's context schema
    (:class:`rlm_graph.Context`); override them per run with ``graph.invoke(input, context={...})``.
    ``max_output_chars=None`` and ``prompt_style="auto"`` follow the root model: a small one
    (tagged ``rlm:small-model``, as the ``local`` model is) gets 2,000 chars and the compact
    prompt.

    Input ``{"query": str, "context"?: payload}``; output ``answer``, ``usage``,
    ``iterations``, ``stopped_reason`` and ``messages``.
    """
    defaults: dict[str, Any] = {
        "model": model if isinstance(model, str) else None,
        "sub_model": sub_model if isinstance(sub_model, str) else None,
        "max_depth": max_depth,
        "max_iterations": max_iterations,
        "exec_timeout": exec_timeout,
        "max_output_chars": max_output_chars,
        "prompt_style": prompt_style,
        "sandbox": sandbox,
        "max_concurrency": max_concurrency,
        "max_llm_calls": max_llm_calls,
        "max_total_tokens": max_total_tokens,
        "max_seconds": max_seconds,
    }
    context_cls = context_class_with_defaults(defaults)
    validate_context(context_cls())
    models = _Models(
        model if isinstance(model, BaseChatModel) else None,
        sub_model if isinstance(sub_model, BaseChatModel) else None,
    )
    # The compiled graph, once built: rlm_query runs it again as a child.
    compiled: list[CompiledStateGraph[Any, Any, Any, Any]] = []

    def invoke_child(
        child_input: dict[str, Any], config: RunnableConfig, ctx: dict[str, Any]
    ) -> dict[str, Any]:
        return compiled[0].invoke(child_input, config, context=ctx)

    def settings(runtime: Runtime[Context]) -> Context:
        return resolve_context(runtime.context, context_cls)

    def effective(ctx: Context) -> Context:
        """``ctx`` with an empty max_output_chars filled in from the root model."""
        if ctx.max_output_chars is not None:
            return ctx
        chars = prompts.default_output_chars(models.root(ctx))
        return dataclasses.replace(ctx, max_output_chars=chars)

    def live(state: State, config: RunnableConfig, runtime: Runtime[Context]) -> Run:
        run = get_run(state["run_id"], config, effective(settings(runtime)))
        run.writer = runtime.stream_writer
        return run

    # ---- nodes -------------------------------------------------------------------------

    def start(state: State, config: RunnableConfig, runtime: Runtime[Context]) -> dict[str, Any]:
        """Validate input and settings (before any model call), open the run, build the prompt."""
        query, payload = state.get("query"), state.get("context")
        validate_input(query, payload)
        assert isinstance(query, str)
        ctx = settings(runtime)
        validate_context(ctx)
        root_model = models.root(ctx)  # provider/key errors surface now, before any call
        models.sub(ctx)
        ctx = effective(ctx)
        if ctx.sandbox == "strict":
            from rlm_graph.sandbox.strict import check_available

            check_available()  # one-line SandboxError now rather than after the first model call
        conf = config.get("configurable") or {}
        run = _open_run(conf.get("rlm_run_id") or new_id(), config, ctx)
        run.writer = runtime.stream_writer
        update: dict[str, Any] = {}
        if payload is None or isinstance(payload, tuple):
            # Seed behaviour: the query is the payload. A tuple is stored as the list it reads as.
            # Otherwise "context" is not rewritten: a checkpointer would store it again.
            payload = query if payload is None else list(payload)
            update["context"] = payload
        run.emit(
            "run_start",
            query=preview(query),
            context_type=prompts.payload_type(payload),
            context_chars=prompts.payload_chars(payload),
        )
        system = prompts.system_prompt(
            depth=run.info.depth,
            max_depth=ctx.max_depth,
            max_iterations=ctx.max_iterations,
            max_output_chars=_output_chars(ctx),
            max_concurrency=ctx.max_concurrency,
            remaining=run.budget.remaining(),
            compact=prompts.use_compact_prompt(ctx.prompt_style, root_model),
        )
        return {
            **update,
            "run_id": run.info.run_id,
            "messages": [
                RemoveMessage(id=REMOVE_ALL_MESSAGES),  # a thread's earlier run is not this one's
                SystemMessage(system),
                HumanMessage(prompts.user_prompt(query, payload)),
            ],
            "iterations": 0,
            "usage": empty_usage(),
            "answer": "",
            "stopped_reason": "",
            "code_blocks": [],
            "reply_final": None,
            "results": [],
            "best_answer": None,
        }

    # think, execute and finish have an async twin (same steps, awaited calls) so that
    # ainvoke/astream cancellation stops the model call or code block and closes the run.

    def think(state: State, config: RunnableConfig, runtime: Runtime[Context]) -> Command[Any]:
        """Ask the root model for the next step."""
        run = _think_begins(live(state, config, runtime), state)
        try:
            reply, usage = call_model(run.budget, models.root(run.ctx), state["messages"])
        except BudgetExhausted:
            return _after_think({"stopped_reason": "budget"})
        return _after_think(_think_ends(run, state, reply, usage))

    async def athink(
        state: State, config: RunnableConfig, runtime: Runtime[Context]
    ) -> Command[Any]:
        run = _think_begins(live(state, config, runtime), state)
        try:
            reply, usage = await acall_model(run.budget, models.root(run.ctx), state["messages"])
        except BudgetExhausted:
            return _after_think({"stopped_reason": "budget"})
        return _after_think(_think_ends(run, state, reply, usage))

    def execute(state: State, config: RunnableConfig, runtime: Runtime[Context]) -> dict[str, Any]:
        """Run the reply's code blocks in order in the run's sandbox."""
        run, sandbox = _execute_begins(state, config, runtime)
        results: list[BlockResult] = []
        for index, code in enumerate(state["code_blocks"]):
            run.emit("code", index=index, code=code)
            if _observed(run, results, index, sandbox.run(code)):
                break
        return {"results": results, "usage": add_usage(state["usage"], run.take_usage())}

    async def aexecute(
        state: State, config: RunnableConfig, runtime: Runtime[Context]
    ) -> dict[str, Any]:
        run, sandbox = _execute_begins(state, config, runtime)
        results: list[BlockResult] = []
        for index, code in enumerate(state["code_blocks"]):
            run.emit("code", index=index, code=code)
            if _observed(run, results, index, await sandbox.arun(code)):
                break
        return {"results": results, "usage": add_usage(state["usage"], run.take_usage())}

    def _execute_begins(
        state: State, config: RunnableConfig, runtime: Runtime[Context]
    ) -> tuple[Run, Any]:
        run = live(state, config, runtime)
        run.config = config
        if run.sandbox is None:
            handlers = Handlers(run, lambda: models.sub(run.ctx), invoke_child)
            run.sandbox = _open_sandbox(run, state, handlers)
        left = run.budget.remaining()["seconds"]
        # The tree's deadline also bounds a block (at least 1 s, so the block can still report).
        if left is not None:
            run.sandbox.exec_timeout = min(run.ctx.exec_timeout, max(1.0, float(left)))
        return run, run.sandbox

    def observe(state: State, config: RunnableConfig, runtime: Runtime[Context]) -> Command[Any]:
        """Turn the results into the next message, or stop: answer given, replies or budget out."""
        run = live(state, config, runtime)
        results = state["results"]
        done = next((r["final_answer"] for r in results if r["final_answer"] is not None), None)
        if done is not None:
            return _after_observe({"answer": done, "stopped_reason": "final_answer", "results": []})
        if not state["code_blocks"]:
            message = prompts.CORRECTION
        else:
            message = prompts.observation(
                results,
                rejected_final=state["reply_final"] is not None,
                iteration=state["iterations"],
                max_iterations=run.ctx.max_iterations,
                repeated=_repeats_previous_reply(state),
            )
        best = state["reply_final"] or _last_output(results) or state.get("best_answer")
        update: dict[str, Any] = {
            "messages": [HumanMessage(message)],
            "results": [],
            "code_blocks": [],
            "best_answer": best,
        }
        if state["iterations"] >= run.ctx.max_iterations:
            update["stopped_reason"] = "max_iterations"
        elif run.budget.exhausted():
            update["stopped_reason"] = "budget"
        return _after_observe(update)

    def finish(state: State, config: RunnableConfig, runtime: Runtime[Context]) -> dict[str, Any]:
        """Produce the answer (forcing one when none was given), close the run, report."""
        run, ask = _finish_begins(live(state, config, runtime), state)
        reply = None
        if ask is not None:
            with contextlib.suppress(BudgetExhausted):
                reply = call_model(run.budget, models.root(run.ctx), [*state["messages"], ask])
        return _finish_ends(run, state, ask, reply)

    async def afinish(
        state: State, config: RunnableConfig, runtime: Runtime[Context]
    ) -> dict[str, Any]:
        run, ask = _finish_begins(live(state, config, runtime), state)
        reply = None
        if ask is not None:
            with contextlib.suppress(BudgetExhausted):
                messages = [*state["messages"], ask]
                reply = await acall_model(run.budget, models.root(run.ctx), messages)
        return _finish_ends(run, state, ask, reply)

    # ---- wiring ------------------------------------------------------------------------
    # think and observe route by returning Command(goto=...) (see _after_think): a conditional
    # edge makes LangGraph rebuild the whole state after the node, re-running the messages
    # reducer over the growing conversation, just to read two keys (~1 ms per iteration at 40
    # iterations). ``destinations`` keeps the loop's edges in the drawn graph.

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(
        State, context_schema=context_cls, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("start", _guarded(start))
    builder.add_node(
        "think", _guarded(think, athink), destinations=("execute", "finish", "observe")
    )
    builder.add_node("execute", _guarded(execute, aexecute))
    builder.add_node("observe", _guarded(observe), destinations=("finish", "think"))
    builder.add_node("finish", _guarded(finish, afinish))
    builder.add_edge(START, "start")
    builder.add_edge("start", "think")
    builder.add_edge("execute", "observe")
    builder.add_edge("finish", END)
    graph = builder.compile(name="rlm", checkpointer=checkpointer)
    compiled.append(graph)
    return graph


def _think_begins(run: Run, state: State) -> Run:
    run.iteration = state["iterations"] + 1
    run.emit("iteration_start")
    run.step_started = time.monotonic()
    return run


# think and observe are the nodes that branch. Each returns Command(goto=...) decided from its
# own update; the state they start from never holds an answer or a stop reason (either one
# always leads to finish).


def _after_think(update: dict[str, Any]) -> Command[Any]:
    """finish on an answer or a spent budget; else run the code, or observe a reply without any
    (observe sends the correction)."""
    if update.get("stopped_reason") or update.get("answer"):
        return Command(update=update, goto="finish")
    return Command(update=update, goto="execute" if update["code_blocks"] else "observe")


def _after_observe(update: dict[str, Any]) -> Command[Any]:
    """finish on final_answer(), max_iterations or a spent budget; else think again."""
    stop = update.get("stopped_reason") or update.get("answer")
    return Command(update=update, goto="finish" if stop else "think")


def _think_ends(run: Run, state: State, reply: BaseMessage, usage: Usage) -> dict[str, Any]:
    text = message_text(reply)
    parsed = parse_reply(text)
    final = parsed.final_answer or None  # an empty "Final Answer:" is no answer
    run.emit(
        "model_reply",
        thought=preview(parsed.thought, THOUGHT_CHARS),
        n_code_blocks=len(parsed.code_blocks),
        has_final=final is not None,
        seconds=round(time.monotonic() - run.step_started, 4),
        usage=usage,
    )
    premature = final is not None and bool(parsed.code_blocks)
    update: dict[str, Any] = {
        "messages": [AIMessage(drop_final_answer(text) if premature else text)],
        "iterations": run.iteration,
        "usage": add_usage(state["usage"], usage),
        "code_blocks": parsed.code_blocks,
        "reply_final": final,
    }
    if final is not None and not parsed.code_blocks:
        update.update(answer=final, stopped_reason="final_answer")
    return update


_RESULT_FIELDS = tuple(k for k in BlockResult.__annotations__ if k != "index")


def _observed(run: Run, results: list[BlockResult], index: int, r: Any) -> bool:
    """Record one block's result; True when it called final_answer() (later blocks are skipped)."""
    result = BlockResult(index=index, **{k: getattr(r, k) for k in _RESULT_FIELDS})  # type: ignore[typeddict-item]
    results.append(result)
    run.emit("observation", **{k: v for k, v in result.items() if k != "final_answer"})
    return r.final_answer is not None


def _repeats_previous_reply(state: State) -> bool:
    """Whether this reply's code is exactly the previous reply's: a model at temperature 0 that
    re-runs its code to "check" it otherwise loops on it until its replies run out."""
    messages = state["messages"]
    # [..., previous reply, its observation, this reply]
    if len(messages) < 3 or not isinstance(messages[-3], AIMessage):
        return False
    return parse_reply(message_text(messages[-3])).code_blocks == state["code_blocks"]


def _finish_begins(run: Run, state: State) -> tuple[Run, HumanMessage | None]:
    """The run, and the forced-answer request when the run needs one."""
    if state.get("answer") or state.get("stopped_reason") == "budget":
        return run, None
    if run.budget.exhausted():
        return run, None
    return run, HumanMessage(prompts.FORCED_ANSWER)


def _finish_ends(
    run: Run, state: State, ask: HumanMessage | None, reply: tuple[BaseMessage, Usage] | None
) -> dict[str, Any]:
    answer, reason = state.get("answer") or "", state.get("stopped_reason") or ""
    usage, messages = state["usage"], []
    if not answer:
        reason = "max_iterations" if reply is not None else "budget"
    if reply is not None and ask is not None:
        text = message_text(reply[0])
        usage = add_usage(usage, reply[1])
        messages = [ask, AIMessage(text)]
        answer = (parse_reply(text).final_answer or text).strip()
    if not answer:
        answer = (state.get("best_answer") or "").strip() or (
            f"No answer was found before the run stopped ({reason})."
        )
    run.emit("final", answer=answer, stopped_reason=reason, iterations=state["iterations"])
    run.emit("run_end", usage=usage, seconds=round(time.monotonic() - run.started, 4))
    close_run(run.info.run_id)
    return {
        "answer": answer,
        "stopped_reason": reason,
        "usage": usage,
        "messages": messages,
        # Drop the payload: a later run on the same thread without "context" must not see it.
        "context": None,
    }


def _open_sandbox(run: Run, state: State, handlers: Handlers) -> Any:
    from rlm_graph.sandbox import Sandbox  # lazy: only runs that execute code need it

    ctx = run.ctx
    sandbox = Sandbox(
        state["context"],
        state["query"],
        handlers=handlers.as_dict(),
        mode=ctx.sandbox,
        exec_timeout=ctx.exec_timeout,
        max_output_chars=_output_chars(ctx),
        max_concurrency=ctx.max_concurrency,
    )
    sandbox.passthrough_exceptions = (
        *getattr(sandbox, "passthrough_exceptions", ()),
        GraphBubbleUp,
    )
    return sandbox


def _output_chars(ctx: Context) -> int:
    # build_graph's effective() has filled it in; the fallback only keeps the type an int.
    return ctx.max_output_chars or prompts.FULL_OUTPUT_CHARS


def _last_output(results: list[BlockResult]) -> str | None:
    for r in reversed(results):
        if r["output"].strip() and not r["error"]:
            return r["output"].strip()[-2000:]
    return None


__all__ = ["build_graph"]
