"""rlm_graph.as_tool: the RLM as a tool of a LangGraph ReAct agent, with the real sandbox."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel

from rlm_graph import as_tool, build_graph
from tests.fakes import FakeChatModel, answer_model, code, scripted


class ToolCallingFake(BaseChatModel):
    """An agent model: first calls the tool ``tool`` with ``args``, then echoes its result."""

    tool: str
    args: dict[str, Any]

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage(content=f"The tool said: {last.content}")
        else:
            call = {"name": self.tool, "args": self.args, "id": "call-1", "type": "tool_call"}
            reply = AIMessage(content="", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=reply)])


def _agent(model: BaseChatModel, tool: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent's deprecation notice
        from langgraph.prebuilt import create_react_agent

        return create_react_agent(model, [tool])


def test_react_agent_gets_only_the_answer() -> None:
    graph = build_graph(model=answer_model())
    tool = as_tool(graph, name="ask_rlm", description="Answer questions about long text.")
    assert tool.name == "ask_rlm"
    schema = tool.tool_call_schema.model_json_schema()
    assert schema["required"] == ["query"]
    assert schema["properties"]["query"]["type"] == "string"
    assert {"type": "string"} in schema["properties"]["context"]["anyOf"]
    agent_model = ToolCallingFake(tool="ask_rlm", args={"query": "how long?", "context": "x" * 42})
    out = _agent(agent_model, tool).invoke({"messages": [("user", "how long is it?")]})
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_messages] == ["42"]
    assert out["messages"][-1].content == "The tool said: 42"


class Size(BaseModel):
    chars: int


async def test_typed_graph_tool_returns_the_validated_object_async() -> None:
    model = FakeChatModel(respond=scripted(code("final_answer({'chars': len(context)})")))
    tool = as_tool(build_graph(model=model, output_schema=Size), name="measure")
    agent_model = ToolCallingFake(tool="measure", args={"query": "size?", "context": "abc"})
    out = await _agent(agent_model, tool).ainvoke({"messages": [("user", "size?")]})
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_messages] == ['{"chars": 3}']
    assert await tool.ainvoke({"query": "size?"}) == {"chars": 5}
