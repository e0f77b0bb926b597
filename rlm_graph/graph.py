"""The RLM loop as a LangGraph state machine, and :func:`build_graph`.

    START → start → think ─┬─ code ───────→ execute → observe ─┬─→ think
                           ├─ no code, no answer ───→ observe  └─→ finish → END
                           └─ answer / budget ──────────────────→ finish

``rlm_query`` inside the sandbox invokes this same compiled graph with a fresh input and the
node's config (depth + 1 in ``configurable``), so children nest in streaming, tracing and
checkpoints. Live objects (sandbox, budget) stay out of state: see :mod:`rlm_graph.runs`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from rlm_graph import prompts
from rlm_graph.budget import BudgetExhausted
from rlm_graph.context import (
    Context,
    SandboxMode,
    context_class_with_defaults,
    resolve_context,
    validate_context,
)
from rlm_graph.events import THOUGHT_CHARS, preview
from rlm_graph.parsing import parse_reply
from rlm_graph.prompts import validate_input
from rlm_graph.runs import Handlers, Run, call_model, close_run, get_run, message_text, new_id
from rlm_graph.runs import open_run as _open_run
from rlm_graph.state import BlockResult, InputState, OutputState, State, add_usage, empty_usage


def _guarded(node: Callable[..., Any]) -> Any:
    """Close the run's live objects when a node fails, then re-raise.

    Graph control flow (``GraphBubbleUp``: interrupts) passes through with the sandbox kept,
    so a resumed run finds its REPL variables; the root's cleanup or exit handler closes it.
    """

    @functools.wraps(node)
    def wrapper(state: State, *args: Any, **kwargs: Any) -> Any:
        try:
            return node(state, *args, **kwargs)
        except GraphBubbleUp:
            raise
        except BaseException:
            if state.get("run_id"):
                close_run(state["run_id"])
            raise

    return wrapper


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
    max_output_chars: int = 20_000,
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
    compiled: list[
        CompiledStateGraph[Any, Any, Any, Any]
    ] = []  # the graph, once built: children run it again

    def invoke_child(
        child_input: dict[str, Any], config: RunnableConfig, ctx: dict[str, Any]
    ) -> dict[str, Any]:
        return compiled[0].invoke(child_input, config, context=ctx)

    def settings(runtime: Runtime[Context]) -> Context:
        return resolve_context(runtime.context, context_cls)

    # ---- nodes -------------------------------------------------------------------------

    def start(state: State, config: RunnableConfig, runtime: Runtime[Context]) -> dict[str, Any]:
        """Validate input and settings (before any model call), open the run, build the prompt."""
        query, payload = state.get("query"), state.get("context")
        validate_input(query, payload)
        assert isinstance(query, str)
        ctx = settings(runtime)
        validate_context(ctx)
        models.root(ctx), models.sub(ctx)  # provider/key errors surface now, before any call
        conf = config.get("configurable") or {}
        run = _open_run(conf.get("rlm_run_id") or new_id(), config, ctx)
        run.writer = runtime.stream_writer
        payload = query if payload is None else payload
        if isinstance(payload, tuple):
            payload = list(payload)  # the sandbox loads JSON-like values; a tuple reads the same
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
            max_output_chars=ctx.max_output_chars,
            max_concurrency=ctx.max_concurrency,
            remaining=run.budget.remaining(),
        )
        return {
            "run_id": run.info.run_id,
            "context": payload,
            "messages": [SystemMessage(system), HumanMessage(prompts.user_prompt(query, payload))],
            "iterations": 0,
            "usage": empty_usage(),
            "answer": "",
            "stopped_reason": "",
            "code_blocks": [],
            "reply_final": None,
            "results": [],
            "best_answer": None,
        }

    def think(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        """Ask the root model for the next step."""
        run = get_run(state["run_id"])
        run.writer = runtime.stream_writer
        run.iteration = state["iterations"] + 1
        run.emit("iteration_start")
        began = time.monotonic()
        try:
            reply, usage = call_model(run.budget, models.root(run.ctx), state["messages"])
        except BudgetExhausted:
            return {"stopped_reason": "budget"}
        text = message_text(reply)
        parsed = parse_reply(text)
        final = parsed.final_answer if parsed.final_answer else None
        run.emit(
            "model_reply",
            thought=preview(parsed.thought, THOUGHT_CHARS),
            n_code_blocks=len(parsed.code_blocks),
            has_final=final is not None,
            seconds=round(time.monotonic() - began, 4),
            usage=usage,
        )
        update: dict[str, Any] = {
            "messages": [AIMessage(text)],
            "iterations": run.iteration,
            "usage": add_usage(state["usage"], usage),
            "code_blocks": parsed.code_blocks,
            "reply_final": final,
        }
        if final is not None and not parsed.code_blocks:
            update.update(answer=final, stopped_reason="final_answer")
        return update

    def execute(state: State, config: RunnableConfig, runtime: Runtime[Context]) -> dict[str, Any]:
        """Run the reply's code blocks in order in the run's sandbox."""
        run = get_run(state["run_id"])
        run.config, run.writer = config, runtime.stream_writer
        if run.sandbox is None:
            run.sandbox = _open_sandbox(
                run, state, Handlers(run, lambda: models.sub(run.ctx), invoke_child)
            )
        results: list[BlockResult] = []
        for index, code in enumerate(state["code_blocks"]):
            run.emit("code", index=index, code=code)
            r = run.sandbox.run(code)
            result = BlockResult(
                index=index,
                output=r.output,
                output_chars=r.output_chars,
                error=r.error,
                final_answer=r.final_answer,
                timed_out=r.timed_out,
                restarted=r.restarted,
                seconds=r.seconds,
            )
            results.append(result)
            run.emit("observation", **{k: v for k, v in result.items() if k != "final_answer"})
            if r.final_answer is not None:
                break
        return {"results": results, "usage": add_usage(state["usage"], run.take_usage())}

    def observe(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        """Turn the results into the next message (or take the answer given by final_answer())."""
        run = get_run(state["run_id"])
        results = state["results"]
        done = next((r["final_answer"] for r in results if r["final_answer"] is not None), None)
        if done is not None:
            return {"answer": done, "stopped_reason": "final_answer", "results": []}
        if not state["code_blocks"]:
            message = prompts.CORRECTION
        else:
            message = prompts.observation(
                results,
                rejected_final=state["reply_final"] is not None,
                iteration=state["iterations"],
                max_iterations=run.ctx.max_iterations,
            )
        best = state["reply_final"] or _last_output(results) or state.get("best_answer")
        return {
            "messages": [HumanMessage(message)],
            "results": [],
            "code_blocks": [],
            "best_answer": best,
        }

    def finish(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        """Produce the answer (forcing one when none was given), close the run, report."""
        run = get_run(state["run_id"])
        run.writer = runtime.stream_writer
        answer, reason = state.get("answer") or "", state.get("stopped_reason") or ""
        usage = state["usage"]
        messages: list[Any] = []
        if not answer and not reason:
            reason = "budget" if run.budget.exhausted() else "max_iterations"
        if not answer and reason == "max_iterations":
            ask = HumanMessage(prompts.FORCED_ANSWER)
            try:
                reply, call_usage = call_model(
                    run.budget, models.root(run.ctx), [*state["messages"], ask]
                )
                text = message_text(reply)
                usage = add_usage(usage, call_usage)
                messages = [ask, AIMessage(text)]
                parsed = parse_reply(text)
                answer = (parsed.final_answer or text).strip()
            except BudgetExhausted:
                reason = "budget"
        if not answer:
            answer = (state.get("best_answer") or "").strip() or (
                f"No answer was found before the run stopped ({reason})."
            )
        run.emit("final", answer=answer, stopped_reason=reason, iterations=state["iterations"])
        run.emit("run_end", usage=usage, seconds=round(time.monotonic() - run.started, 4))
        close_run(run.info.run_id)
        return {"answer": answer, "stopped_reason": reason, "usage": usage, "messages": messages}

    # ---- routing -----------------------------------------------------------------------

    def after_think(state: State) -> Literal["execute", "observe", "finish"]:
        if state.get("stopped_reason") or state.get("answer"):
            return "finish"
        return "execute" if state["code_blocks"] else "observe"

    def after_observe(state: State) -> Literal["think", "finish"]:
        run = get_run(state["run_id"])
        if state.get("answer") or state["iterations"] >= run.ctx.max_iterations:
            return "finish"
        return "finish" if run.budget.exhausted() else "think"

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(
        State, context_schema=context_cls, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("start", _guarded(start))
    builder.add_node("think", _guarded(think))
    builder.add_node("execute", _guarded(execute))
    builder.add_node("observe", _guarded(observe))
    builder.add_node("finish", _guarded(finish))
    builder.add_edge(START, "start")
    builder.add_edge("start", "think")
    builder.add_conditional_edges("think", after_think)
    builder.add_edge("execute", "observe")
    builder.add_conditional_edges("observe", after_observe)
    builder.add_edge("finish", END)
    graph = builder.compile(name="rlm", checkpointer=checkpointer)
    compiled.append(graph)
    return graph


def _open_sandbox(run: Run, state: State, handlers: Handlers) -> Any:
    from rlm_graph.sandbox import Sandbox  # lazy: only runs that execute code need it

    ctx = run.ctx
    sandbox = Sandbox(
        state["context"],
        state["query"],
        handlers=handlers.as_dict(),
        mode=ctx.sandbox,
        exec_timeout=ctx.exec_timeout,
        max_output_chars=ctx.max_output_chars,
        max_concurrency=ctx.max_concurrency,
    )
    sandbox.passthrough_exceptions = (
        *getattr(sandbox, "passthrough_exceptions", ()),
        GraphBubbleUp,
    )
    return sandbox


def _last_output(results: list[BlockResult]) -> str | None:
    for r in reversed(results):
        if r["output"].strip() and not r["error"]:
            return r["output"].strip()[-2000:]
    return None


__all__ = ["build_graph"]
