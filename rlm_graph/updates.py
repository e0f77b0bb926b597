"""The state updates the loop's nodes return, and how ``think`` and ``observe`` route.

Pure functions of the state and a model reply or block outcome; the nodes in
:mod:`rlm_graph.nodes` do the I/O and call these.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, SystemMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from rlm_graph import prompts
from rlm_graph.answers import AnswerSchema
from rlm_graph.context import Context
from rlm_graph.events import THOUGHT_CHARS, preview
from rlm_graph.executor import BlockOutcome
from rlm_graph.model_calls import message_text
from rlm_graph.model_profile import CHARS_PER_TOKEN, FULL_OUTPUT_CHARS
from rlm_graph.parsing import as_used, drop_final_answer, parse_reply
from rlm_graph.runs import Run
from rlm_graph.state import BlockResult, RouteState, State, Usage, add_usage, empty_usage


def fresh_state(
    run_id: str,
    system: str,
    query: str,
    payload: Any,
    user: str | None = None,
    check_answers: bool = False,
    dead_ends: int = 0,
) -> dict[str, Any]:
    """The loop's state at the start of a run (a thread's earlier run is not this one's);
    ``user`` replaces the first user message (a follow-up's)."""
    return {
        "run_id": run_id,
        "messages": [
            RemoveMessage(id=REMOVE_ALL_MESSAGES),
            SystemMessage(system),
            HumanMessage(user or prompts.user_prompt(query, payload)),
        ],
        "iterations": 0,
        "usage": empty_usage(),
        "answer": "",
        "answer_text": "",
        "answer_errors": None,
        "stopped_reason": "",
        "code_blocks": [],
        "premature_answer": None,
        "results": [],
        "best_answer": None,
        "feedback": None,
        "answer_checked": False,
        "key_term": None,
        "key_term_looked": False,
        "check_answers": check_answers,
        "dead_ends_left": dead_ends,
        "resample": False,
        "direct": False,
        "error": None,
    }


def as_given(state: State, payload: Any) -> dict[str, Any]:
    """``state`` with ``context`` the payload the caller gave (by value, file or reference:
    the :class:`~rlm_graph.payload_store.Given` ``start`` resolved), or None when the query
    stands in for it."""
    given = any(state.get(k) is not None for k in ("context", "context_file", "context_ref"))
    return {**state, "context": payload if given else None}


def payload_left(state: State, ref: Any) -> dict[str, Any]:
    """What ``start`` puts in state for the payload: only its reference (and no old record)."""
    update: dict[str, Any] = {"payload": ref, "journal": None, "replay_note": None}
    if state.get("context") is not None:
        update["context"] = None
    return update


def tree_spent(run: Run) -> dict[str, Any]:
    """The tree budget's spend for state (kept by the root run only: resumes continue it)."""
    return {"tree_spent": run.budget.snapshot()} if run.is_root else {}


def system_for(run: Run, ctx: Context, compact: bool, sub_chars: int, extra: dict[str, Any]) -> str:
    """The run's system prompt (``extra``: the tools' part, :mod:`rlm_graph.extras`)."""
    return prompts.system_prompt(
        depth=run.info.depth,
        max_depth=ctx.max_depth,
        max_iterations=ctx.max_iterations,
        max_output_chars=output_chars(ctx),
        max_concurrency=ctx.max_concurrency,
        remaining=run.budget.remaining(),
        compact=compact,
        sub_chars=sub_chars,
        **extra,
    )


def goes_direct(strategy: str, payload_chars: int, window: int | None) -> bool:
    """Whether a run answers with one call on the whole payload: always for 'direct'; for
    'auto' when the payload takes at most a third of the root model's known window."""
    if strategy == "direct":
        return True
    if strategy != "auto" or window is None:
        return False
    return payload_chars <= window * CHARS_PER_TOKEN // 3


def direct_state(run_id: str, query: str, payload: Any) -> dict[str, Any]:
    """The state of a run on the direct strategy: one question with the whole payload."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return {
        **fresh_state(run_id, prompts.DIRECT_SYSTEM_PROMPT, query, None),
        "messages": [
            RemoveMessage(id=REMOVE_ALL_MESSAGES),
            SystemMessage(prompts.DIRECT_SYSTEM_PROMPT),
            HumanMessage(prompts.direct_prompt(query, text)),
        ],
        "direct": True,
    }


# think and observe branch on the state they leave, not on a Command: a thread paused before
# execute or think and then edited with update_state(...) routes from what the edit left,
# instead of stopping with no next node and an empty answer.


def route_after_think(state: RouteState) -> str:
    """finish on an answer or a spent budget; else run the code, or observe a reply without
    any (observe sends the correction)."""
    if state.get("stopped_reason") or state.get("answer"):
        return "finish"
    return "execute" if state.get("code_blocks") else "observe"


def route_after_observe(state: RouteState) -> str:
    """finish on final_answer(), max_iterations or a spent budget; else think again."""
    return "finish" if state.get("stopped_reason") or state.get("answer") else "think"


def reply_update(
    run: Run, state: State, iteration: int, text: str, usage: Usage, seconds: float
) -> dict[str, Any]:
    """The state update for one model reply. A Final Answer written in the same reply as code
    is a guess made before the output existed: it is cut from the history (a small model
    otherwise repeats it) and kept only as a fallback answer. An empty one is cut too, and so
    is text after the reply's code (:func:`rlm_graph.parsing.as_used`)."""
    parsed = parse_reply(text)
    final = parsed.final_answer or None  # an empty "Final Answer:" is no answer
    run.emit(
        "model_reply",
        iteration,
        thought=preview(parsed.thought, THOUGHT_CHARS),
        n_code_blocks=len(parsed.code_blocks),
        has_final=final is not None,
        seconds=round(seconds, 4),
        usage=usage,
    )
    update: dict[str, Any] = {
        "iterations": iteration,
        "usage": add_usage(state["usage"], usage),
        "code_blocks": parsed.code_blocks,
        "feedback": None,
        "resample": False,
    }
    if state.get("direct"):  # the direct strategy: the one reply is the answer
        answer = (final or text).strip() or "(the model gave no answer)"
        return {**update, "messages": [AIMessage(text)], "code_blocks": [], "answer": answer,
                "stopped_reason": "final_answer"}  # fmt: skip
    if final is not None and is_placeholder(final):
        update["feedback"] = prompts.PLACEHOLDER_ANSWER.format(answer=final)
        final = None
    elif final is not None and _FAILED_SEARCH.match(final) and not parsed.code_blocks:
        failed = prompts.FAILED_SEARCH_ANSWER.format(answer=final)
        update["feedback"] = prompts.naming(failed, state.get("key_term"))
        final = None
    premature = final is not None and bool(parsed.code_blocks)
    # An empty "Final Answer:" line goes too: kept, a small model copies it into every reply.
    empty = parsed.final_answer == ""
    update["messages"] = [
        AIMessage(as_used(drop_final_answer(text) if premature or empty else text))
    ]
    update["premature_answer"] = final
    if final is not None and not parsed.code_blocks:
        unchecked = state.get("check_answers") and not state.get("answer_checked")
        doubt = doubted(final, state["messages"], state.get("query", "")) if unchecked else None
        if doubt is not None:
            # Asked once per run: a small model's guess, the empty result a hint flagged, a
            # sentence saying nothing was found, or one item where the question asks for all.
            search = prompts.search_for(state.get("key_term"))
            update["feedback"] = doubt.format(answer=final, search=search)
            update["answer_checked"] = True
        else:
            update.update(answer=final, stopped_reason="final_answer")
    return update


_PLACEHOLDER = re.compile(
    r"^\s*(<[^<>]{0,40}>|\.{3}|…|\[[^\[\]]{0,40}\]|answer|the answer)\s*$", re.I
)
# An answer that reports the search failed ("No match"): refused while replies are left (the
# last, forced answer takes whatever the model says).
_FAILED_SEARCH = re.compile(
    r"^\W*(no match(es)?( found)?|not found|nothing found|no results?|unknown)\W*$", re.I
)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def is_placeholder(answer: str) -> bool:
    """Whether a Final Answer is a template's placeholder (``<answer>``, ``...``) or empty."""
    return not answer.strip() or bool(_PLACEHOLDER.match(answer))


# Longer answers are sentences: not checked against what the run has seen, nor counted as items.
SHORT_ANSWER = 40


def doubted(answer: str, messages: list[Any], query: str = "") -> str | None:
    """Why a Final Answer should be checked once, or None: it repeats the empty result the last
    observation's hint flagged, it is a sentence saying nothing was found, no observation
    showed it, or it is one short item where ``query`` asks for all of them."""
    last = str(messages[-1].content) if messages and isinstance(messages[-1], HumanMessage) else ""
    flagged = prompts.warned_empty(last)
    if flagged and answer.strip().strip(".").lower() in prompts.EMPTY_VALUES:
        return prompts.EMPTY_RESULT_ANSWER
    if says_absent(answer):
        return prompts.ABSENT_ANSWER
    if not grounded(answer, messages):
        return prompts.UNCONFIRMED_ANSWER
    if len(answer) <= SHORT_ANSWER and asks_for_several(query) and len(answer_items(answer)) == 1:
        return prompts.ONE_ITEM_ANSWER
    return None


# A question whose answer is a list: it says how to separate the items, or asks to list or find
# all or every one of them ("Which topic is the most common among all records?" is not one).
_SEVERAL = re.compile(
    r"separated by|comma[- ]separated|\b(list|find|name|give|what are|which are)\s+(all|every)\b"
    r"|^\s*list\b",
    re.I | re.M,
)


# A sentence saying the thing asked about is not there ("No classes in these files have X as a
# base", "No pairs of user ids found ..."): after a search that missed, the small model states
# the miss as the answer. "No", "None" or "nothing" alone may be a real answer (a yes/no
# question, a default value), so only a sentence of three words or more counts.
_ABSENT = re.compile(
    r"^\W*(no|none of|nothing|there (is|are|was|were) no)\b"
    r"|\bnot (found|mentioned|present)\b|\b(does|do|did) not (exist|appear|contain|mention)\b",
    re.I,
)


def says_absent(answer: str) -> bool:
    """Whether ``answer`` is a sentence saying nothing was found."""
    return len(answer.split()) >= 3 and bool(_ABSENT.search(answer))


def asks_for_several(query: str) -> bool:
    """Whether ``query`` asks for a list of items rather than one value."""
    return bool(_SEVERAL.search(query))


_ITEM_SEPARATOR = re.compile(r"\s*(?:[,;\n]|\band\b)\s*")


def answer_items(answer: str) -> list[str]:
    """The items of an answer written as a list (commas, semicolons, lines or "and"), each
    without its quotes or backticks (a small model writes code names as `PACKAGE_DIR`)."""
    body = answer.strip().strip("[](){}.")
    items = (item.strip("'\"` ") for item in _ITEM_SEPARATOR.split(body))
    return [item for item in items if item]


def grounded(answer: str, messages: list[Any]) -> bool:
    """Whether a short answer could come from what the run has seen: each of its numbers, or
    else each of its items (the whole answer when it is one), appears in an observation. Long
    answers are not checked."""
    seen = "\n".join(str(m.content) for m in messages[2:] if isinstance(m, HumanMessage))
    numbers = [n.replace(",", "") for n in _NUMBER.findall(answer)]
    if numbers:
        shown = {n.replace(",", "") for n in _NUMBER.findall(seen)}
        return all(n in shown for n in numbers)
    if len(answer) > SHORT_ANSWER:
        return True
    # A list is seen when each item is, wherever it was shown ("UAHZP, RGYRR" after one grep
    # line showed both: not a guess).
    seen = seen.lower()
    items = answer_items(answer) or [answer.strip()]
    return all(i.lower().strip(".") in seen for i in items)


_RESULT_FIELDS = tuple(k for k in BlockResult.__annotations__ if k not in ("index", "probe"))


def record_result(run: Run, iteration: int, index: int, outcome: BlockOutcome) -> BlockResult:
    """A block's outcome as a serializable result, announced as an ``observation`` event."""
    result = BlockResult(index=index, **{k: getattr(outcome, k) for k in _RESULT_FIELDS})  # type: ignore[typeddict-item]
    run.emit("observation", iteration, **{k: v for k, v in result.items() if k != "final_answer"})
    return result


def correction_for(state: State) -> str:
    """The message after a reply with neither code nor an answer: a firmer one when the reply
    repeats the previous one word for word (a small model at temperature 0 sent the same
    code-less reply five times in a row, dev seed 1, niah_multivalue 32k)."""
    messages = state["messages"]
    if len(messages) >= 3 and isinstance(messages[-3], AIMessage):
        if message_text(messages[-3]).strip() == message_text(messages[-1]).strip():
            return prompts.CORRECTION_REPEATED
    return prompts.CORRECTION


def repeats_previous_reply(state: State) -> bool:
    """Whether this reply's code is exactly the previous reply's: a model at temperature 0 that
    re-runs its code to "check" it otherwise loops on it until its replies run out."""
    messages = state["messages"]
    # [..., previous reply, its observation, this reply]
    if len(messages) < 3 or not isinstance(messages[-3], AIMessage):
        return False
    return parse_reply(message_text(messages[-3])).code_blocks == state["code_blocks"]


def answer_update(
    run: Run,
    state: State,
    ask: HumanMessage,
    reply: tuple[Any, Usage] | None,
    failed: tuple[str, str | None] | None = None,
    schema: AnswerSchema | None = None,
) -> dict[str, Any]:
    """The final state update: the answer given, the forced one, or the best one known.
    ``failed`` is ``(stopped_reason, error)`` when the forced-answer call failed. With an output
    ``schema``, an answer not given through final_answer is validated here, and an invalid one
    leaves ``answer`` None and ``stopped_reason`` "invalid_answer" (its text is kept)."""
    reason = state.get("stopped_reason") or ""
    accepted = reason == "final_answer"
    answer = (state.get("answer_text") or state.get("answer") or "") if accepted else ""
    usage, messages, error = state["usage"], [], state.get("error")
    if failed is not None:
        reason, error = failed
    elif not answer and reason != "error":
        reason = "max_iterations" if reply is not None else "budget"
    if reply is not None:
        text = message_text(reply[0])
        usage = add_usage(usage, reply[1])
        messages = [ask, AIMessage(text)]
        answer = (parse_reply(text).final_answer or text).strip()
    if not answer:
        why = f"{reason}: {error}" if error else reason
        answer = (state.get("best_answer") or "").strip() or (
            f"No answer was found before the run stopped ({why})."
        )
    value: Any = answer
    if schema is not None:
        checked = schema.check(answer) if not accepted else None
        if checked is None:
            value = state.get("answer")
        elif checked.ok:
            value = checked.value
        else:
            value = None
            reason = "invalid_answer" if reason not in ("budget", "error") else reason
    iterations = state["iterations"]
    run.emit(
        "final",
        iterations,
        answer=answer,
        stopped_reason=reason,
        iterations=iterations,
        error=error,
    )
    run.emit("run_end", iterations, usage=usage, seconds=round(time.monotonic() - run.started, 4))
    return {
        "answer": value,
        "answer_text": answer,
        "stopped_reason": reason,
        "error": error,
        "usage": usage,
        "messages": messages,
        # Drop the payload: a later run on the same thread without "context" must not see it.
        "context": None,
    }


def output_chars(ctx: Context) -> int:
    """The run's output cap (``Loop.settings`` has filled it in; the fallback keeps an int)."""
    return ctx.max_output_chars or FULL_OUTPUT_CHARS


def last_output(results: list[BlockResult]) -> str | None:
    """The last clean block output (a fallback answer), cut to 2,000 chars."""
    for r in reversed(results):
        if r["output"].strip() and not r["error"]:
            return r["output"].strip()[-2000:]
    return None
