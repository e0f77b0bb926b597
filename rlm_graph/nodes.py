"""The RLM loop, node by node: start → think → execute → observe → (think | finish).

    START → start → think ─┬─ code ───────→ execute → observe ─┬─→ think
                           ├─ no code, no answer ───→ observe  └─→ finish → END
                           └─ answer / budget ──────────────────→ finish

Each node is a method of :class:`Loop`, which holds what one compiled graph owns: its settings
class, its models, its executor factory and its table of live runs. ``think``, ``execute`` and
``finish`` are generators that yield their blocking steps (:mod:`rlm_graph.steps`), so one body
serves ``invoke`` and ``ainvoke``. ``think`` and ``observe`` route with ``Command(goto=...)``:
a conditional edge would make LangGraph rebuild the whole state after the node (re-running the
messages reducer over the growing conversation) just to read two keys.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime
from langgraph.types import Command

from rlm_graph import approval, idle, prompts
from rlm_graph.budget import BudgetExhausted
from rlm_graph.context import Context, resolve_context
from rlm_graph.describe import payload_chars, payload_type
from rlm_graph.events import preview
from rlm_graph.executor import Executor, ExecutorFactory, ExecutorSpec
from rlm_graph.host_functions import HostFunctions
from rlm_graph.inputs import validate_input
from rlm_graph.journal import RecordingHandlers, entry_of, replay
from rlm_graph.model_calls import message_text
from rlm_graph.model_choice import ModelChoice
from rlm_graph.model_profile import default_output_chars, use_compact_prompt
from rlm_graph.payload_store import Offload, Payloads, input_payload
from rlm_graph.runs import Run, RunTable, current_iteration, new_id
from rlm_graph.state import BlockResult, JournalEntry, State, Usage, add_usage
from rlm_graph.steps import ModelCall, RunBlock, Step
from rlm_graph.updates import (
    answer_update,
    fresh_state,
    last_output,
    output_chars,
    record_result,
    repeats_previous_reply,
    reply_update,
    route_after_observe,
    route_after_think,
)

Body = Generator[Step, Any, Any]


@dataclass
class Loop:
    """The nodes of one compiled graph and the live objects they share."""

    context_cls: type[Context]
    models: ModelChoice
    executor_factory: ExecutorFactory
    runs: RunTable = field(default_factory=RunTable)
    #: The compiled graph these nodes belong to (set by ``build_graph``): ``rlm_query`` runs it.
    graph: CompiledStateGraph[Any, Any, Any, Any] | None = None
    #: The runs' payloads, by reference, in the run's store (or this graph's memory).
    payloads: Payloads = field(init=False)

    def __post_init__(self) -> None:
        self.payloads = Payloads(lambda: get_runtime(Context).store)

    # ---- what every node needs ----------------------------------------------------------

    def settings(self) -> Context:
        """This run's settings, with an empty ``max_output_chars`` filled in from the model."""
        ctx = resolve_context(get_runtime(Context).context, self.context_cls)
        if ctx.max_output_chars is not None:
            return ctx
        chars = default_output_chars(self.models.root(ctx))
        return dataclasses.replace(ctx, max_output_chars=chars)

    def live(self, state: State) -> Run:
        """The run's live objects; re-opened when this process has none (a run resumed from a
        checkpoint elsewhere gets a fresh budget and, at its next block, a fresh executor)."""
        run = self.runs.find(state["run_id"])
        if run is not None:
            return run
        run = self.runs.open(state["run_id"], get_config(), self.settings())
        spent = state.get("tree_spent")
        if run.is_root and spent:
            run.budget.restore(spent)  # the tree's spend continues across processes
        return run

    def spent(self, run: Run) -> dict[str, Any]:
        """The tree budget's spend for state (kept by the root run only)."""
        return {"tree_spent": run.budget.snapshot()} if run.is_root else {}

    def release(self, state: Any) -> None:
        """Close the run's live objects after a node failed (cancellation included)."""
        if isinstance(state, dict) and state.get("run_id"):
            self.runs.close(state["run_id"])
            self.payloads.release(state.get("payload"))

    # ---- nodes ---------------------------------------------------------------------------

    def start(self, state: State) -> Body:
        """Validate input and settings (before any model call), open the run, build the prompt."""
        query = state.get("query")
        validate_input(query, None)
        assert isinstance(query, str)
        ctx = self.settings()
        root_model = self.models.root(ctx)  # provider/key errors surface now, before any call
        self.models.sub(ctx)
        if ctx.sandbox == "strict":
            from rlm_graph.sandbox.strict import check_available

            check_available()  # one-line SandboxError now rather than after the first call
        config = get_config()
        run_id = (config.get("configurable") or {}).get("rlm_run_id") or new_id()
        payload, ref = yield from input_payload(state, self.payloads)
        run = self.runs.open(run_id, config, ctx)
        # The payload leaves state here: later checkpoints and node spans carry only `ref`.
        update: dict[str, Any] = {"payload": ref, "journal": None, "replay_note": None}
        if state.get("context") is not None:
            update["context"] = None
        run.emit(
            "run_start",
            0,
            query=preview(query),
            context_type=payload_type(payload),
            context_chars=payload_chars(payload),
        )
        system = prompts.system_prompt(
            depth=run.info.depth,
            max_depth=ctx.max_depth,
            max_iterations=ctx.max_iterations,
            max_output_chars=output_chars(ctx),
            max_concurrency=ctx.max_concurrency,
            remaining=run.budget.remaining(),
            compact=use_compact_prompt(ctx.prompt_style, root_model),
        )
        fresh = fresh_state(run.info.run_id, system, query, payload)
        return {**update, **fresh, **self.spent(run)}

    def think(self, state: State) -> Body:
        """Ask the root model for the next step."""
        run = self.live(state)
        iteration = state["iterations"] + 1
        run.emit("iteration_start", iteration)
        began = time.monotonic()
        try:
            reply, usage = yield ModelCall(run.budget, self.models.root(run.ctx), state["messages"])
        except BudgetExhausted:
            return route_after_think({"stopped_reason": "budget", **self.spent(run)})
        text = message_text(reply)
        seconds = time.monotonic() - began
        update = reply_update(run, state, iteration, text, usage, seconds)
        return route_after_think({**update, **self.spent(run)})

    def execute(self, state: State) -> Body:
        """Run the reply's code blocks (after review, if the settings ask for it); a paused
        run gives its sandbox back after ``sandbox_ttl``."""
        run = self.live(state)
        idle.unpark(run)
        try:
            return (yield from self._execute(run, state))
        except GraphBubbleUp:  # paused (an interrupt here or in a child): the TTL starts
            idle.park(run, run.ctx.sandbox_ttl)
            raise

    def _execute(self, run: Run, state: State) -> Body:
        iteration = state["iterations"]
        checked = approval.review(run, state, self.runs)  # may pause the run here
        if checked.rejection is not None:
            result = record_result(run, iteration, 0, approval.Rejected(checked.rejection))
            return {"results": [result], "journal": [], **self.spent(run)}
        token = current_iteration.set(iteration)  # for events from the handler threads
        try:
            fresh = run.executor is None
            ref = state.get("payload")
            if fresh and ref:  # the payload, from the store (off the event loop)
                payload = yield Offload(lambda: self.payloads.get(ref))
            executor = self.executor_of(run, state, payload if fresh and ref else None)
            note = state.get("replay_note")
            if fresh and state.get("journal"):  # no live REPL: rebuild it from the record
                note = yield from replay(executor, run.handlers, state["journal"])
            results: list[BlockResult] = []
            entries: list[JournalEntry] = []
            for index, code in enumerate(checked.blocks):
                run.emit("code", iteration, index=index, code=code)
                run.handlers.begin_block()
                outcome = yield RunBlock(executor, code)
                results.append(record_result(run, iteration, index, outcome))
                entries.append(entry_of(iteration, index, code, outcome, run.handlers.calls()))
                if outcome.final_answer is not None:
                    break  # later blocks are skipped
        finally:
            current_iteration.reset(token)
        usage = add_usage(state["usage"], run.take_usage())
        note = "\n\n".join(n for n in (note, checked.note) if n) or None
        update = {"results": results, "usage": usage, "journal": entries, "replay_note": note}
        return {**update, **self.spent(run)}

    def observe(self, state: State) -> Command[Any]:
        """Turn the results into the next message, or stop: answer given, replies or budget out."""
        run = self.live(state)
        results = state["results"]
        done = next((r["final_answer"] for r in results if r["final_answer"] is not None), None)
        if done is not None:
            return route_after_observe(
                {"answer": done, "stopped_reason": "final_answer", "results": []}
            )
        if not state["code_blocks"]:
            message = prompts.CORRECTION
        else:
            message = prompts.observation(
                results,
                rejected_final=state["premature_answer"] is not None,
                iteration=state["iterations"],
                max_iterations=run.ctx.max_iterations,
                repeated=repeats_previous_reply(state),
            )
        if state.get("replay_note"):
            message = f"{state['replay_note']}\n\n{message}"
        best = state["premature_answer"] or last_output(results) or state.get("best_answer")
        update: dict[str, Any] = {
            "messages": [HumanMessage(message)],
            "results": [],
            "code_blocks": [],
            "best_answer": best,
            "replay_note": None,
        }
        if state["iterations"] >= run.ctx.max_iterations:
            update["stopped_reason"] = "max_iterations"
        elif run.budget.exhausted():
            update["stopped_reason"] = "budget"
        return route_after_observe(update)

    def finish(self, state: State) -> Body:
        """Produce the answer (forcing one when none was given), close the run, report."""
        run = self.live(state)
        needs_answer = not state.get("answer") and state.get("stopped_reason") != "budget"
        ask = HumanMessage(prompts.FORCED_ANSWER)
        reply: tuple[Any, Usage] | None = None
        if needs_answer and not run.budget.exhausted():
            model = self.models.root(run.ctx)
            try:
                reply = yield ModelCall(run.budget, model, [*state["messages"], ask])
            except BudgetExhausted:
                reply = None
        update = answer_update(run, state, ask, reply)
        self.runs.close(run.info.run_id)
        self.payloads.release(state.get("payload"))
        # A later run on this thread must not see this run's payload or its record.
        cleared = {"payload": None, "context_file": None, "context_ref": None}
        return {**update, **cleared, **self.spent(run)}

    # ---- the executor ----------------------------------------------------------------------

    def executor_of(self, run: Run, state: State, payload: Any) -> Executor:
        """The run's executor, started on its first block; its block time is capped by the
        tree's deadline (at least 1 s, so the block can still report)."""
        if run.executor is None:
            assert self.graph is not None, "Loop.graph is set by build_graph"
            host = HostFunctions(
                run, self.graph, lambda: self.models.sub(run.ctx), put_payload=self.payloads.put
            )
            run.handlers = RecordingHandlers(host.as_dict())
            spec = ExecutorSpec(
                payload=payload,
                query=state["query"],
                handlers=run.handlers.as_dict(),
                mode=run.ctx.sandbox,
                exec_timeout=run.ctx.exec_timeout,
                max_output_chars=output_chars(run.ctx),
                max_concurrency=run.ctx.max_concurrency,
                passthrough_exceptions=(GraphBubbleUp,),
            )
            run.executor = self.executor_factory(spec)
        left = run.budget.remaining()["seconds"]
        if left is not None:
            run.executor.exec_timeout = min(run.ctx.exec_timeout, max(1.0, float(left)))
        return run.executor
