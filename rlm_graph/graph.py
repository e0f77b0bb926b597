"""Wiring: :func:`build_graph` puts the nodes of :mod:`rlm_graph.nodes` into a LangGraph graph.

``rlm_query`` inside the sandbox invokes this same compiled graph with a fresh input and the
calling node's config (depth + 1 in ``configurable``), so children nest in streaming, tracing
and checkpoints. Live objects (executor, budget) stay out of state, in the graph's run table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from rlm_graph.context import context_class_with_defaults
from rlm_graph.executor import ExecutorFactory, sandbox_executor
from rlm_graph.extras import Extras
from rlm_graph.model_choice import ModelChoice
from rlm_graph.nodes import Loop
from rlm_graph.payload_store import store_for
from rlm_graph.state import InputState, OutputState, State, typed_output_state
from rlm_graph.steps import LoopNode
from rlm_graph.tools import ToolLike
from rlm_graph.updates import route_after_observe, route_after_think

Graph = CompiledStateGraph[Any, Any, Any, Any]


def build_graph(
    model: str | BaseChatModel | None = None,
    sub_model: str | BaseChatModel | None = None,
    *,
    checkpointer: BaseCheckpointSaver | bool | None = None,
    executor: ExecutorFactory | None = None,
    tools: Sequence[ToolLike] | None = None,
    child_tools: Sequence[ToolLike] | None = None,
    output_schema: Any = None,
    store: BaseStore | None = None,
    **settings: Any,
) -> Graph:
    """Build the compiled RLM graph (named ``"rlm"``).

    ``model`` / ``sub_model`` are ``"provider/model"`` specs, LangChain chat models, or None
    (default: :func:`rlm_graph.models.default_model_spec`; ``sub_model``: ``model``).
    ``settings`` are any fields of :class:`rlm_graph.Context` (``max_depth``,
    ``max_iterations``, ``sandbox``, ``max_llm_calls``, ...): they become the defaults of the
    graph's context schema; override them per run with ``graph.invoke(input, context={...})``.
    An unknown name raises ``TypeError``, an out-of-range value ``ValueError``.
    ``max_output_chars=None`` and ``prompt_style="auto"`` follow the root model: a small one
    (tagged ``rlm:small-model``, as the ``local`` model is) gets 2,000 chars and the compact
    prompt. ``executor`` makes each run's REPL (default: the sandbox; :mod:`rlm_graph.executor`).
    ``tools``: LangChain tools or typed, documented callables, each a REPL function of the
    same name run on the host (:mod:`rlm_graph.tools`); children get them unless
    ``child_tools`` is given. ``output_schema`` (Pydantic model, TypedDict or JSON schema
    dict) types the root's answer: ``answer`` is then the validated value in JSON form and
    ``answer_text`` its text (:mod:`rlm_graph.answers`).

    The payload is kept out of state: stored once by content hash in ``store`` (a LangGraph
    ``BaseStore``; default: one in the same database as a SQLite or Postgres
    ``checkpointer``, else the store the LangGraph server provides, else this graph's memory),
    and state keeps only its reference (:mod:`rlm_graph.payload_store`).

    Input ``{"query": str, "context"?: payload}`` (or ``"context_file": path`` instead of
    ``context``); output ``answer``, ``usage``,
    ``iterations``, ``stopped_reason`` and ``messages``.
    """
    for name, value in (("model", model), ("sub_model", sub_model)):
        if isinstance(value, str):
            settings[name] = value
    context_cls = context_class_with_defaults(settings)
    loop = Loop(
        context_cls=context_cls,
        models=ModelChoice(
            model if isinstance(model, BaseChatModel) else None,
            sub_model if isinstance(sub_model, BaseChatModel) else None,
        ),
        executor_factory=executor or sandbox_executor,
        extras=Extras.build(tools, child_tools, output_schema),
    )

    def node(name: str) -> LoopNode:
        return LoopNode(name, getattr(loop, name), loop.release)

    schema = loop.extras.answer_schema
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(
        State,
        context_schema=context_cls,
        input_schema=InputState,
        output_schema=typed_output_state(schema.annotation) if schema else OutputState,
    )
    builder.add_node("start", node("start"))
    builder.add_node("think", node("think"))
    builder.add_node("execute", node("execute"))
    builder.add_node("observe", node("observe"))
    builder.add_node("finish", node("finish"))
    builder.add_edge(START, "start")
    builder.add_edge("start", "think")
    builder.add_conditional_edges("think", route_after_think, ["execute", "finish", "observe"])
    builder.add_edge("execute", "observe")
    builder.add_conditional_edges("observe", route_after_observe, ["finish", "think"])
    builder.add_edge("finish", END)
    if store is None and checkpointer not in (None, True, False):
        store = store_for(checkpointer)
    graph = builder.compile(name="rlm", checkpointer=checkpointer, store=store)
    loop.graph = graph
    return graph


__all__ = ["build_graph"]
