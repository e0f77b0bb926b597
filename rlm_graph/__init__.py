"""rlm-graph: Recursive Language Models as a LangGraph workflow.

Public API (imported lazily so ``import rlm_graph`` and the sandbox worker stay cheap):

- :func:`build_graph` — the compiled RLM graph.
- :class:`Context` — its per-run settings (the graph's context schema).
- :func:`resolve_model` — ``"provider/model"`` spec → LangChain chat model.
- :class:`InputError` — the ``ValueError`` raised for unusable graph input.
- :func:`open_runs` / :func:`close_runs` — the live runs (sandboxes) of a graph.
- :func:`as_tool` — a graph as a LangChain tool returning only its answer.
- :func:`delete_threads` / :func:`prune_threads` — delete threads (by id, or idle for a while)
  with every payload no remaining thread references; :func:`release_payloads` for threads
  whose checkpoints were deleted elsewhere.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from rlm_graph.agent_tool import as_tool
    from rlm_graph.context import Context
    from rlm_graph.graph import build_graph
    from rlm_graph.inputs import InputError
    from rlm_graph.live_runs import close_runs, open_runs
    from rlm_graph.models import resolve_model
    from rlm_graph.payload_gc import delete_threads, prune_threads, release_payloads

_LAZY = {
    "build_graph": "rlm_graph.graph",
    "Context": "rlm_graph.context",
    "resolve_model": "rlm_graph.models",
    "InputError": "rlm_graph.inputs",
    "open_runs": "rlm_graph.live_runs",
    "close_runs": "rlm_graph.live_runs",
    "as_tool": "rlm_graph.agent_tool",
    "delete_threads": "rlm_graph.payload_gc",
    "prune_threads": "rlm_graph.payload_gc",
    "release_payloads": "rlm_graph.payload_gc",
}

__all__ = [
    "Context",
    "InputError",
    "__version__",
    "as_tool",
    "build_graph",
    "close_runs",
    "delete_threads",
    "open_runs",
    "prune_threads",
    "release_payloads",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm_graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
