"""Module-level ``graph`` for ``langgraph.json`` (LangGraph Studio / ``langgraph dev``).

The model is chosen like the CLI does — ``RLM_MODEL``, Groq when ``GROQ_API_KEY`` is set, the
offline local model when its extra is installed — and ``RLM_SUB_MODEL`` sets the sub-model.
Nothing is resolved or called at import, so the server loads the graph and shows its schemas
even without any key; every other setting is the context schema, editable per run in Studio.
"""

from __future__ import annotations

import os

from rlm_graph import build_graph
from rlm_graph.models import ModelSpecError, default_model_spec


def _model_spec() -> str | None:
    try:
        return default_model_spec()
    except ModelSpecError:
        # No model available yet: load anyway; a run will say which key to set.
        return None


graph = build_graph(model=_model_spec(), sub_model=os.environ.get("RLM_SUB_MODEL") or None)
