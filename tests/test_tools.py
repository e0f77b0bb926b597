"""build_graph(tools=[...]): the run's own tools as REPL functions, with the real sandbox."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.tools import StructuredTool, tool

from rlm_graph import build_graph, open_runs
from tests.fakes import FakeChatModel, code, depth, final, last_text, scripted, text_of, turn


@tool
def get_weather(city: str, units: str = "C") -> str:
    """The current temperature in a city."""
    if city == "Atlantis":
        raise ValueError("no weather station in Atlantis")
    return f"21 {units} in {city}"


async def _population(city: str) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"city": city, "population": len(city) * 1000}


population = StructuredTool.from_function(
    coroutine=_population, name="population", description="Population of a city (async)."
)


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _printed(messages: list[BaseMessage]) -> str:
    m = re.search(r"Observation:\n(.*?)\n\n\(", last_text(messages), re.S)
    return m.group(1).strip() if m else "?"


def _echo_model(src: str) -> FakeChatModel:
    """Run ``src`` once, then answer with what it printed."""

    def respond(messages: list[BaseMessage]) -> str:
        return code(src) if turn(messages) == 0 else final(_printed(messages))

    return FakeChatModel(respond=respond)


def _stream(graph: Any, inp: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], list[dict]]:
    evs: list[dict] = []
    out: dict[str, Any] = {}
    for mode, chunk in graph.stream(inp, stream_mode=["custom", "values"], **kw):
        if mode == "custom":
            evs.append(chunk)
        else:
            out = chunk
    return out, evs


def test_sync_and_async_tools_called_from_code() -> None:
    src = (
        "w = get_weather('Paris', units='F')\n"
        "p = population('Rome')\n"
        "print(w, p['population'], add(2, b=3))"
    )
    graph = build_graph(model=_echo_model(src), tools=[get_weather, population, add])
    out, evs = _stream(graph, {"query": "weather?"})
    assert out["answer"] == "21 F in Paris 4000 5"
    tool_calls = [e for e in evs if e["event"] == "subcall_end" and e["kind"] == "tool"]
    assert [e["function"] for e in tool_calls] == ["get_weather", "population", "add"]
    assert tool_calls[0]["answer"] == "21 F in Paris" and tool_calls[0]["error"] is None
    starts = [e for e in evs if e["event"] == "subcall_start" and e["kind"] == "tool"]
    assert starts[0]["prompt"] == '{"city": "Paris", "units": "F"}'
    assert open_runs(graph) == []


def test_prompt_lists_each_tool_with_signature_and_description() -> None:
    model = FakeChatModel(respond=scripted(final("x")))
    build_graph(model=model, tools=[get_weather, add]).invoke({"query": "q"})
    system = text_of(model.prompts[0][0])
    assert "`get_weather(city: str, units: str = 'C')`: The current temperature in a city." in (
        system
    )
    assert "`add(a: int, b: int)`: Add two integers." in system
    model2 = FakeChatModel(respond=scripted(final("x")))
    build_graph(model=model2).invoke({"query": "q"})
    assert "Your tools" not in text_of(model2.prompts[0][0])


class _ToolRuns(BaseCallbackHandler):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.parents: list[Any] = []
        self.blocks: list[Any] = []

    def on_tool_start(self, serialized: Any, input_str: str, **kwargs: Any) -> None:
        name = str((serialized or {}).get("name") or kwargs.get("name"))
        if name == "code block":  # the block's own run (see spans.py): the tools nest under it
            self.blocks.append(kwargs.get("run_id"))
            return
        self.names.append(name)
        self.parents.append(kwargs.get("parent_run_id"))


async def test_async_run_awaits_async_tools_and_traces_tool_runs() -> None:
    calls: list[str] = []

    def sync_side(city: str) -> str:
        calls.append("sync")
        return "sync"

    async def async_side(city: str) -> str:
        calls.append("async")
        return "async"

    both = StructuredTool.from_function(
        func=sync_side, coroutine=async_side, name="where", description="Both sides."
    )
    graph = build_graph(model=_echo_model("print(where('x'))"), tools=[both])
    tracer = _ToolRuns()
    out = await graph.ainvoke({"query": "q"}, {"callbacks": [tracer]})
    assert out["answer"] == "async" and calls == ["async"]
    assert tracer.names == ["where"] and tracer.parents[0] in tracer.blocks
    calls.clear()
    out = graph.invoke({"query": "q"})
    assert out["answer"] == "sync" and calls == ["sync"]


def test_tool_errors_are_raised_in_the_repl_with_the_tools_message() -> None:
    src = (
        "for call in (lambda: get_weather('Atlantis'), lambda: add(1, 2, 3),\n"
        "             lambda: add(1, c=2), lambda: add('x', 'y')):\n"
        "    try:\n"
        "        call()\n"
        "    except ToolError as e:\n"
        "        print('ToolError:', e)\n"
    )
    graph = build_graph(model=_echo_model(src), tools=[get_weather, add])
    out, evs = _stream(graph, {"query": "q"})
    lines = out["answer"].splitlines()
    assert lines[0] == ("ToolError: get_weather failed: ValueError: no weather station in Atlantis")
    assert lines[1].startswith("ToolError: add() takes 2 argument(s) but 3 were given")
    assert lines[2].startswith("ToolError: add() has no argument 'c'")
    assert lines[3].startswith("ToolError: add failed: ValidationError")
    ends = [e for e in evs if e["event"] == "subcall_end" and e["kind"] == "tool"]
    assert "no weather station" in (ends[0]["error"] or "")


def test_hostile_worker_cannot_call_undeclared_tools() -> None:
    """Code reaching the stub's closure to send call_tool with another name gets refused."""
    secret_calls: list[int] = []

    def secret() -> str:
        """Not given to this run."""
        secret_calls.append(1)
        return "leaked"

    src = (
        "worker = [c.cell_contents for c in get_weather.__closure__\n"
        "          if hasattr(c.cell_contents, 'call')][0]\n"
        "for name in ('secret', 'llm_query', '__class__', 7):\n"
        "    try:\n"
        "        print(worker.call('call_tool', [name, [], {}]))\n"
        "    except Exception as e:\n"
        "        print(e)\n"
    )
    graph = build_graph(model=_echo_model(src), tools=[get_weather], child_tools=[secret])
    out = graph.invoke({"query": "q"})
    assert out["answer"].splitlines() == [
        "no tool named 'secret'",
        "no tool named 'llm_query'",
        "no tool named '__class__'",
        "no tool named '7'",
    ]
    assert secret_calls == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("print", "shadow"), ("llm_query", "shadow"), ("context", "shadow"), ("a-b", "identifier")],
)
def test_bad_tool_names_fail_at_build(name: str, fragment: str) -> None:
    bad = StructuredTool.from_function(func=add, name=name, description="x")
    with pytest.raises(ValueError, match=fragment):
        build_graph(model=FakeChatModel(respond=scripted(final("x"))), tools=[bad])


def test_undocumented_callable_and_non_tool_are_rejected() -> None:
    def nodoc(a: int) -> int:
        return a

    with pytest.raises(ValueError, match="no docstring"):
        build_graph(tools=[nodoc])
    with pytest.raises(ValueError, match="neither a LangChain BaseTool"):
        build_graph(tools=[42])  # type: ignore[list-item]


def test_tool_timeout_and_concurrency_cap() -> None:
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def slow(seconds: float) -> str:
        """Sleep a while."""
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(seconds)
        with lock:
            state["now"] -= 1
        return "slept"

    capped = StructuredTool.from_function(slow, metadata={"rlm_max_concurrency": 2})
    src = (
        "import threading\n"
        "out = []\n"
        "ts = [threading.Thread(target=lambda: out.append(slow(0.2))) for _ in range(5)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "try:\n"
        "    slow(5)\n"
        "except ToolError as e:\n"
        "    out.append(str(e))\n"
        "print(out)\n"
    )
    graph = build_graph(model=_echo_model(src), tools=[capped], tool_timeout=0.5)
    out = graph.invoke({"query": "q"})
    assert out["answer"] == str(["slept"] * 5 + ["slow timed out after 0.5 s"])
    assert state["most"] == 2


def _child_model(child_src: str) -> FakeChatModel:
    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            if turn(messages) == 0:
                return code("print(rlm_query('use the tool'))")
            return final(_printed(messages))
        return code(child_src) if turn(messages) == 0 else final(_printed(messages))

    return FakeChatModel(respond=respond)


def test_children_inherit_tools_unless_child_tools_says_otherwise() -> None:
    src = "try:\n    print(add(20, 22))\nexcept NameError as e:\n    print('none:', e)"
    out = build_graph(model=_child_model(src), tools=[add]).invoke({"query": "q"})
    assert out["answer"] == "42"
    out = build_graph(model=_child_model(src), tools=[add], child_tools=[]).invoke({"query": "q"})
    assert out["answer"] == "none: name 'add' is not defined"


@pytest.mark.strict_sandbox
def test_tools_in_strict_mode() -> None:
    src = "print(get_weather('Oslo'), population('Oslo')['population'])"
    graph = build_graph(model=_echo_model(src), tools=[get_weather, population], sandbox="strict")
    assert graph.invoke({"query": "q"})["answer"] == "21 C in Oslo 4000"
