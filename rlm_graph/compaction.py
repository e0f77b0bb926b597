"""History compaction: when the root's conversation nears its model's window, the older
iterations are replaced by a summary.

Before a root model call, :func:`needs_compaction` estimates the conversation's tokens (4
characters a token, the estimate the rest of the project uses). Past :data:`COMPACT_AT` of the
window, the loop lists the REPL's variables (one hidden block), asks the sub-model for a
summary of the older replies and observations (:func:`summary_request`), and rebuilds the
conversation as: system prompt, the first user message with the summary and the variables
appended (:func:`compacted_messages`), then the last :data:`KEEP_ITERATIONS` iterations verbatim.
Each compaction emits a ``compaction`` event.

The window is the ``window_tokens`` setting, else ``max_input_tokens`` of the model's LangChain
profile (the ``local`` model reports its server's ``RLM_LOCAL_CTX``); else none (no
compaction).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from rlm_graph.budget import BudgetExhausted
from rlm_graph.events import THOUGHT_CHARS, preview
from rlm_graph.model_calls import message_text
from rlm_graph.model_profile import window_tokens
from rlm_graph.runs import Run
from rlm_graph.state import Usage, empty_usage
from rlm_graph.steps import ModelCall, RunBlock, Step

#: Fraction of the window at which the history is compacted (the reply needs room too).
COMPACT_AT = 0.75
#: Iterations (reply + observation) kept verbatim after a compaction.
KEEP_ITERATIONS = 2
CHARS_PER_TOKEN = 4
SUMMARY_MARK = "\n\n--- Summary of your earlier work (older replies were compacted) ---\n"
#: Characters of the conversation sent to the summarizer, and of the variable listing.
MAX_SUMMARY_INPUT_CHARS = 200_000
MAX_VARIABLES_CHARS = 2_000

#: The hidden block listing the REPL's variables (names, types, sizes), one per line.
VARIABLES_CODE = """\
for __k, __v in list(globals().items()):
    if __k.startswith('_') or callable(__v) or type(__v).__name__ == 'module':
        continue
    try:
        __n = f', len {len(__v)}'
    except Exception:
        __n = ''
    print(f'{__k}: {type(__v).__name__}{__n}')
"""


def window_of(setting: int | None, model: Any) -> int | None:
    """The root model's window: the ``window_tokens`` setting, else the model's profile."""
    return setting if setting is not None else window_tokens(model)


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """Tokens of ``messages``, estimated from their characters."""
    return sum(len(message_text(m)) for m in messages) // CHARS_PER_TOKEN + 4 * len(messages)


def needs_compaction(messages: Sequence[BaseMessage], window: int | None) -> bool:
    """Whether the history is past :data:`COMPACT_AT` of ``window`` and has older iterations
    to compact."""
    if window is None or len(messages) < 2 + 2 * (KEEP_ITERATIONS + 1):
        return False
    return estimate_tokens(messages) > COMPACT_AT * window


def split(messages: Sequence[BaseMessage]) -> tuple[list[BaseMessage], list[BaseMessage]]:
    """(older iterations to summarize, the last ones kept verbatim); the system prompt and
    first user message are not in either."""
    body = list(messages[2:])
    cut = len(body) - 2 * KEEP_ITERATIONS
    return body[:cut], body[cut:]


def first_message(messages: Sequence[BaseMessage]) -> str:
    """The run's first user message without any earlier summary."""
    return message_text(messages[1]).split(SUMMARY_MARK, 1)[0]


def summary_request(messages: Sequence[BaseMessage], variables: str) -> str:
    """The sub-model prompt summarizing the older part of the conversation."""
    older, _kept = split(messages)
    previous = message_text(messages[1]).split(SUMMARY_MARK, 1)
    lines = [f"[earlier summary]\n{previous[1]}"] if len(previous) > 1 else []
    for m in older:
        who = "AGENT" if isinstance(m, AIMessage) else "REPL"
        lines.append(f"[{who}]\n{message_text(m)}")
    transcript = "\n\n".join(lines)[-MAX_SUMMARY_INPUT_CHARS:]
    return (
        "An agent answers a question by writing Python in a REPL. Summarize its work below "
        "so it can continue without it: what it learned (keep exact numbers, names and "
        "findings), what it tried that failed, and what is left to do. Be brief (at most 200 "
        "words); plain text.\n\n"
        f"Question and data description:\n{first_message(messages)[:4000]}\n\n"
        f"Variables now defined in the REPL:\n{variables or '(none)'}\n\n"
        f"The work so far:\n{transcript}"
    )


def compacted_messages(
    messages: Sequence[BaseMessage], summary: str, variables: str
) -> list[BaseMessage]:
    """The conversation after a compaction (without the system prompt's replacement: the
    caller puts it first)."""
    _older, kept = split(messages)
    text = (
        f"{first_message(messages)}{SUMMARY_MARK}{summary.strip()}\n\n"
        f"Variables defined in the REPL:\n{variables or '(none)'}"
    )
    return [messages[0], HumanMessage(text), *kept]


def replacing(compacted: list[BaseMessage], new: list[BaseMessage]) -> list[Any]:
    """A ``messages`` update replacing the history with ``compacted``, then adding ``new``."""
    return [RemoveMessage(id=REMOVE_ALL_MESSAGES), *compacted, *new]


def compact(
    run: Run, iteration: int, messages: Sequence[BaseMessage], root: Any, sub: Any
) -> Generator[Step, Any, tuple[list[BaseMessage] | None, Usage]]:
    """A node-body step: the compacted conversation (None when not needed) and the usage of
    the summary call. Yields the hidden variables block and the sub-model call."""
    window = window_of(run.ctx.window_tokens, root)
    if not needs_compaction(messages, window):
        return None, empty_usage()
    began = time.monotonic()
    variables = ""
    if run.executor is not None:
        outcome = yield RunBlock(run.executor, VARIABLES_CODE, traced=False)
        if not outcome.error:  # worker output: only ever shown as text
            variables = outcome.output.strip()[:MAX_VARIABLES_CHARS]
    request = [HumanMessage(summary_request(messages, variables))]
    try:
        reply, usage = yield ModelCall(run.budget, sub, request)
    except BudgetExhausted:
        return None, empty_usage()
    summary = message_text(reply)
    new = compacted_messages(messages, summary, variables)
    run.emit(
        "compaction",
        iteration,
        window_tokens=window,
        tokens_before=estimate_tokens(messages),
        tokens_after=estimate_tokens(new),
        messages_before=len(messages),
        messages_after=len(new),
        summary=preview(summary, THOUGHT_CHARS),
        variables=[line.split(":", 1)[0] for line in variables.splitlines()][:50],
        seconds=round(time.monotonic() - began, 4),
    )
    return new, usage


__all__ = [
    "COMPACT_AT",
    "KEEP_ITERATIONS",
    "VARIABLES_CODE",
    "compact",
    "compacted_messages",
    "estimate_tokens",
    "needs_compaction",
    "replacing",
    "summary_request",
    "window_of",
]
