"""The live runs of a compiled RLM graph, seen from outside: list them, close them."""

from __future__ import annotations

from typing import Any

from rlm_graph.nodes import Loop
from rlm_graph.steps import LoopNode

Graph = Any  # a CompiledStateGraph made by rlm_graph.build_graph


def loop_of(graph: Graph) -> Loop:
    """The nodes' :class:`~rlm_graph.nodes.Loop` of a graph made by ``build_graph``."""
    node = graph.nodes["start"].bound
    if not isinstance(node, LoopNode) or not isinstance(getattr(node.body, "__self__", None), Loop):
        raise TypeError("not a graph made by rlm_graph.build_graph")
    return node.body.__self__  # type: ignore[attr-defined]


def open_runs(graph: Graph) -> list[str]:
    """Ids of the runs of ``graph`` whose live objects (sandbox, budget) are open now."""
    return loop_of(graph).runs.ids()


def close_runs(graph: Graph) -> None:
    """Close every open run of ``graph`` now (sandboxes stop, blocked nodes fail; the CLI does
    this on Ctrl-C) and the REPLs kept for follow-ups. A paused thread gets fresh ones."""
    loop = loop_of(graph)
    loop.runs.close_all()
    loop.follow_ups.sessions.close_all()


__all__ = ["close_runs", "loop_of", "open_runs"]
