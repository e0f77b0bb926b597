"""An RLM graph as a LangChain tool for another agent: :func:`as_tool`.

LangGraph's own ``graph.as_tool()`` returns the whole output state — the system prompt and
every observation in ``messages`` — as the calling agent's tool message, and types
``context`` as anything. This tool takes ``{query: str, context: str | None}`` and returns
only the answer (the validated value, for a graph with an ``output_schema``).
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import StructuredTool
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field

DEFAULT_DESCRIPTION = (
    "Answer a question about a long text by exploring it with code in a sandbox (a Recursive "
    "Language Model). Pass the question as `query` and the text as `context`; without a "
    "context the query itself is the data."
)


class RLMToolInput(BaseModel):
    """Arguments of an RLM tool."""

    query: str = Field(description="The question to answer.")
    context: str | None = Field(
        default=None, description="The text the question is about (optional)."
    )


def as_tool(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    *,
    name: str = "rlm",
    description: str = DEFAULT_DESCRIPTION,
) -> StructuredTool:
    """A tool running ``graph`` (from :func:`rlm_graph.build_graph`) that returns only its
    answer. The run nests under the tool's run in tracing (it gets the tool's config)."""

    def inputs(query: str, context: str | None) -> dict[str, Any]:
        return {"query": query} if context is None else {"query": query, "context": context}

    def run(query: str, context: str | None = None, *, config: RunnableConfig) -> Any:
        return graph.invoke(inputs(query, context), config)["answer"]

    async def arun(query: str, context: str | None = None, *, config: RunnableConfig) -> Any:
        return (await graph.ainvoke(inputs(query, context), config))["answer"]

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=description,
        args_schema=RLMToolInput,
    )


__all__ = ["DEFAULT_DESCRIPTION", "RLMToolInput", "as_tool"]
