"""The RLM loop, node by node: start → think → execute → observe → (think | finish).

    START → start → think ─┬─ code ───────→ execute → observe ─┬─→ think
                           ├─ no code, no answer ───→ observe  └─→ finish → END
                           └─ answer / budget ──────────────────→ finish

Each node is a method of :class:`Loop`, which holds what one compiled graph owns. ``think``,
``execute`` and ``finish`` yield their blocking steps (:mod:`rlm_graph.steps`): one body serves
``invoke`` and ``ainvoke``. Routing after ``think`` and ``observe`` reads the state they
leave (:func:`rlm_graph.updates.route_after_think`), so an ``update_state`` edit routes too.
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

from rlm_graph import approval, dead_ends, idle, key_terms, probes, prompts
from rlm_graph.answers import accept, invalid_answer_message
from rlm_graph.budget import BudgetExhausted
from rlm_graph.compaction import compact, replacing
from rlm_graph.context import Context, resolve_context
from rlm_graph.events import preview
from rlm_graph.executor import ExecutorFactory, check_mode
from rlm_graph.extras import Extras
from rlm_graph.followups import FollowUps
from rlm_graph.inputs import validate_input
from rlm_graph.journal import entry_of
from rlm_graph.model_calls import message_text
from rlm_graph.model_choice import ModelChoice
from rlm_graph.model_profile import default_output_chars, use_compact_prompt, window_tokens
from rlm_graph.payload_store import Offload, Payloads, input_payload
from rlm_graph.rebuild import executor_for, host_handlers
from rlm_graph.repl_helpers import prelude
from rlm_graph.retry import ModelCallError, deadline_error
from rlm_graph.runs import Run, RunTable, current_iteration, new_id
from rlm_graph.state import BlockResult, JournalEntry, State, Usage, add_usage
from rlm_graph.steps import ModelCall, RunBlock, Step
from rlm_graph.updates import (
    answer_update,
    as_given,
    correction_for,
    direct_state,
    fresh_state,
    goes_direct,
    last_output,
    payload_left,
    record_result,
    repeats_previous_reply,
    reply_update,
    system_for,
    tree_spent,
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
    #: Tools and answer schema (``build_graph(tools=..., output_schema=...)``).
    extras: Extras = field(default_factory=Extras)
    follow_ups: FollowUps = field(default_factory=FollowUps)
    #: The runs' payloads, by reference, in the run's store (or this graph's memory).
    payloads: Payloads = field(init=False)

    def __post_init__(self) -> None:
        self.payloads = Payloads(lambda: get_runtime(Context).store)

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
        if (run := self.runs.find(state["run_id"])) is not None:
            return run
        run = self.runs.open(state["run_id"], get_config(), self.settings())
        spent = state.get("tree_spent")
        if run.is_root and spent:
            run.budget.restore(spent)  # the tree's spend continues across processes
        return run

    def handlers_of(self, run: Run) -> Any:
        """The host functions serving ``run``'s code (re-made for a follow-up's run)."""
        return host_handlers(run, self.graph, self.models, self.payloads, self.extras)

    def release(self, state: Any) -> None:
        """Close the run's live objects after a node failed (cancellation included)."""
        if isinstance(state, dict) and state.get("run_id"):
            self.runs.close(state["run_id"])
            self.payloads.release(state.get("payload"))

    def start(self, state: State) -> Body:
        """Validate input and settings (before any model call), open the run, build the prompt."""
        query = state.get("query")
        validate_input(query, None)
        assert isinstance(query, str)
        ctx = self.settings()
        root_model = self.models.root(ctx)  # provider/key errors surface now, before any call
        self.models.sub(ctx)
        check_mode(ctx.sandbox)  # a one-line SandboxError now rather than after the first call
        config = get_config()
        run_id = (config.get("configurable") or {}).get("rlm_run_id") or new_id()
        given = yield from input_payload(state, self.payloads)
        run = self.runs.open(run_id, config, ctx)
        begin = self.follow_ups.begin(run, as_given(state, given), config, self.graph, given.ref)
        follow = yield from begin  # may read the value: a parked sandbox's setup block
        # The payload leaves state here: later checkpoints and node spans carry only its ref.
        update: dict[str, Any] = {**follow.update, **payload_left(state, given.ref)}
        info = given.info  # what the prompt and events say of it: the value may not be here
        window = ctx.window_tokens or window_tokens(root_model)
        direct = goes_direct(ctx.strategy, info.chars, window)
        run.emit(
            "run_start",
            0,
            query=preview(query),
            context_type=info.type,
            context_chars=info.chars,
            strategy="direct" if direct else "rlm",
        )
        if direct:  # the whole payload goes in the prompt: small enough to read now
            payload = yield Offload(given.load)
            return {**update, **direct_state(run.info.run_id, query, payload)}
        compact = use_compact_prompt(ctx.prompt_style, root_model)
        sub_chars = self.models.sub_chars(ctx)
        system = system_for(run, ctx, compact, sub_chars, self.extras.prompt_args(run))
        # Small models (the compact prompt): a guess questioned once, a dead end asked again.
        retries = dead_ends.allowed(ctx.dead_end_retries, compact)
        fresh = fresh_state(run_id, system, query, info, follow.user_prompt, compact, retries)
        return {**update, **fresh, **tree_spent(run)}

    def think(self, state: State) -> Body:
        """Ask the root model for the next step."""
        run = self.live(state)
        iteration = state["iterations"] + 1
        run.emit("iteration_start", iteration)
        root, messages = self.models.root(run.ctx), state["messages"]
        compacted, spent = yield from compact(
            run, iteration, messages, root, self.models.sub(run.ctx)
        )
        began = time.monotonic()
        root = dead_ends.sampled(root, iteration) if state.get("resample") else root
        try:
            reply, usage = yield ModelCall(run.budget, root, compacted or messages, run.ctx)
        except BudgetExhausted as exc:
            stop = {"stopped_reason": "budget", "error": deadline_error(exc)}
            return {**stop, **tree_spent(run)}
        except ModelCallError as exc:  # after its retries: keep what the run learned
            stop = {"stopped_reason": "error", "error": str(exc)}
            return {**stop, **tree_spent(run)}
        text = message_text(reply)
        seconds = time.monotonic() - began
        update = reply_update(run, state, iteration, text, add_usage(usage, spent), seconds)
        if compacted is not None:
            update["messages"] = replacing(compacted, update["messages"])
        if "answer" in update:
            update = accept(self.extras.schema_of(run), update)
        return {**update, **tree_spent(run)}

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
            return {"results": [result], "journal": [], **tree_spent(run)}
        token = current_iteration.set(iteration)  # for events from the handler threads
        try:
            assert self.graph is not None, "Loop.graph is set by build_graph"
            executor, note = yield from executor_for(
                run,
                state,
                payloads=self.payloads,
                handlers=self.handlers_of,
                factory=self.executor_factory,
                prelude=prelude(self.models.sub_chars(run.ctx)),
                tools=self.extras.declared(run),
            )
            if run.setup:  # a follow-up's new query and context (rlm_graph.followups)
                setup, run.setup = run.setup, None
                yield RunBlock(executor, setup, traced=False)
            looked, lost = yield from key_terms.key_term_once(executor, state)
            term = looked.get("key_term", state.get("key_term"))
            results: list[BlockResult] = []
            entries: list[JournalEntry] = []
            for index, code in enumerate(checked.blocks):
                run.emit("code", iteration, index=index, code=code)
                run.handlers.begin_block()
                outcome = yield RunBlock(executor, code)
                results.append(record_result(run, iteration, index, outcome))
                yield from probes.look(executor, results[-1], code, term)
                entries.append(entry_of(iteration, index, code, outcome, run.handlers.calls()))
                if outcome.final_answer is not None:
                    break  # later blocks are skipped
        finally:
            current_iteration.reset(token)
        usage = add_usage(state["usage"], run.take_usage())
        note = "\n\n".join(n for n in (note, checked.note, lost) if n) or None
        update = {"results": results, "usage": usage, "journal": entries, "replay_note": note}
        return {**update, **looked, **tree_spent(run)}

    def observe(self, state: State) -> dict[str, Any]:
        """Turn the results into the next message, or stop: answer given, replies or budget out."""
        run = self.live(state)
        results = state["results"]
        done = next((r["final_answer"] for r in results if r["final_answer"] is not None), None)
        errors = state.get("answer_errors")
        if done is not None:
            schema = self.extras.schema_of(run)
            accepted = accept(schema, {"answer": done, "stopped_reason": "final_answer"})
            if "answer" in accepted:
                return {**accepted, "results": []}
            errors = accepted["answer_errors"]
        best = state["premature_answer"] or last_output(results) or state.get("best_answer")
        if not errors and dead_ends.ask_again(state, run.ctx, run.budget):
            return dead_ends.unseen(run, state, best)
        if errors:
            message = invalid_answer_message(errors, state["iterations"], run.ctx.max_iterations)
        elif not state["code_blocks"]:
            message = state.get("feedback") or correction_for(state)
        else:
            message = prompts.observation(
                results,
                rejected_final=state["premature_answer"] is not None,
                iteration=state["iterations"],
                max_iterations=run.ctx.max_iterations,
                repeated=repeats_previous_reply(state),
                term=state.get("key_term"),
            )
        if state.get("replay_note"):
            message = f"{state['replay_note']}\n\n{message}"
        update: dict[str, Any] = {
            "messages": [HumanMessage(message)],
            "results": [],
            "code_blocks": [],
            "best_answer": best,
            "replay_note": None,
            "answer_errors": None,
        }
        if state["iterations"] >= run.ctx.max_iterations:
            update["stopped_reason"] = "max_iterations"
        elif run.budget.exhausted():
            update["stopped_reason"] = "budget"
        return update

    def finish(self, state: State) -> Body:
        """Produce the answer (forcing one when none was given), close the run, report."""
        run = self.live(state)
        needs_answer = state.get("stopped_reason") not in ("final_answer", "budget", "error")
        ask = HumanMessage(prompts.FORCED_ANSWER)
        reply: tuple[Any, Usage] | None = None
        failed: tuple[str, str | None] | None = None
        if needs_answer and not run.budget.exhausted():
            model = self.models.root(run.ctx)
            try:
                reply = yield ModelCall(run.budget, model, [*state["messages"], ask], run.ctx)
            except BudgetExhausted as exc:
                failed = ("budget", deadline_error(exc))
            except ModelCallError as exc:
                failed = ("error", str(exc))
        update = answer_update(run, state, ask, reply, failed, self.extras.schema_of(run))
        update.update(self.follow_ups.end(run, state, update["answer_text"]))
        self.runs.close(run.info.run_id)
        self.payloads.release(state.get("payload"))
        # A later run on this thread must not see this run's payload or its record.
        cleared = dict.fromkeys(("payload", "context_file", "context_ref", "decode_errors"))
        return {**update, **cleared, **tree_spent(run)}
