"""One budgeted model call: reserve a slot in the tree's budget, call, record the usage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig, ensure_config

from rlm_graph.budget import Budget
from rlm_graph.context import Context
from rlm_graph.retry import CallPolicy, acall_with_policy, call_with_policy
from rlm_graph.state import Usage


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


def call_policy(budget: Budget, ctx: Context | None) -> CallPolicy:
    """The time limits and retries of a call in a tree with ``budget`` and settings ``ctx``."""
    if ctx is None:
        return CallPolicy(deadline=budget.deadline(), clock=budget.clock)
    return CallPolicy(
        timeout=ctx.llm_timeout,
        retry_seconds=ctx.llm_retry_seconds,
        deadline=budget.deadline(),
        clock=budget.clock,
    )


def _config(tags: Sequence[str]) -> RunnableConfig | None:
    """The current config plus ``tags``: a model given as an instance is tagged too."""
    if not tags:
        return None
    config = ensure_config()
    config["tags"] = [*config.get("tags", []), *tags]
    return config


def call_model(
    budget: Budget,
    model: BaseChatModel,
    messages: Any,
    ctx: Context | None = None,
    *,
    tags: Sequence[str] = (),
) -> tuple[BaseMessage, Usage]:
    """One budgeted model call: reserve a slot, call (timed and retried per ``ctx``: see
    :mod:`rlm_graph.retry`), record usage (release the slot on error).

    Raises :class:`~rlm_graph.budget.BudgetExhausted` before calling when the budget is spent,
    :class:`~rlm_graph.retry.ModelCallError` when the call failed for good. ``tags`` are added
    to the call's tracing run.
    """
    config = _config(tags)
    with _slot(budget):
        reply = call_with_policy(
            model, lambda: model.invoke(messages, config), call_policy(budget, ctx)
        )
    return _recorded(budget, reply)


async def acall_model(
    budget: Budget,
    model: BaseChatModel,
    messages: Any,
    ctx: Context | None = None,
    *,
    tags: Sequence[str] = (),
) -> tuple[BaseMessage, Usage]:
    """:func:`call_model` for async runs (cancellation releases the slot)."""
    config = _config(tags)
    with _slot(budget):
        reply = await acall_with_policy(
            model, lambda: model.ainvoke(messages, config), call_policy(budget, ctx)
        )
    return _recorded(budget, reply)
