"""Module-level ``graph`` for ``langgraph.json`` (LangGraph Studio / ``langgraph dev``).

Models come from ``RLM_MODEL`` / ``RLM_SUB_MODEL`` (provider specs or ``package.module:attr``
import paths); every other setting is the graph's context schema, editable per run in Studio.
"""

from __future__ import annotations

import os

from rlm_graph import build_graph

graph = build_graph(
    model=os.environ.get("RLM_MODEL") or None,
    sub_model=os.environ.get("RLM_SUB_MODEL") or None,
)
