"""What ``build_graph``'s object arguments add to a run: its tools and its answer schema.

The root gets the graph's ``tools`` and ``output_schema``; a child gets ``child_tools`` (the
same tools when not given) and answers its parent in text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import BaseTool

from rlm_graph.answers import AnswerSchema
from rlm_graph.runs import Run
from rlm_graph.tools import ToolRunner, declared, prompt_lines, to_tools, tools_for_depth


@dataclass(frozen=True)
class Extras:
    """The tools and answer schema of one compiled graph."""

    tools: Mapping[str, BaseTool] = field(default_factory=dict)
    #: The children's tools (None: the same as the root's).
    child_tools: Mapping[str, BaseTool] | None = None
    #: What the root's answer must match (``build_graph(output_schema=...)``).
    answer_schema: AnswerSchema | None = None

    @classmethod
    def build(cls, tools: Any, child_tools: Any, output_schema: Any) -> Extras:
        """From ``build_graph``'s arguments (each checked: one-line ``ValueError``)."""
        return cls(
            to_tools(tools),
            None if child_tools is None else to_tools(child_tools, "child_tools"),
            None if output_schema is None else AnswerSchema(output_schema),
        )

    def schema_of(self, run: Run) -> AnswerSchema | None:
        """The answer schema of a run: the graph's at the root, none below."""
        return self.answer_schema if run.info.depth == 0 else None

    def tools_of(self, run: Run) -> Mapping[str, BaseTool]:
        """The tools of a run at its depth."""
        return tools_for_depth(run.info.depth, self.tools, self.child_tools)

    def prompt_args(self, run: Run) -> dict[str, Any]:
        """The system prompt's ``tools`` and ``answer_schema`` for ``run``."""
        schema = self.schema_of(run)
        return {
            "tools": prompt_lines(self.tools_of(run)),
            "answer_schema": schema.prompt_text() if schema else None,
        }

    def tool_handlers(self, run: Run) -> dict[str, Any]:
        """The ``call_tool`` host handler for ``run`` (none without tools)."""
        tools = self.tools_of(run)
        return {"call_tool": ToolRunner(run, tools).call_tool} if tools else {}

    def declared(self, run: Run) -> list[dict[str, str]]:
        """The tools the sandbox of ``run`` makes stubs for."""
        return declared(self.tools_of(run))
